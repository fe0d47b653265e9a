"""A real kube-apiserver for the session, or an existing cluster via BERTH_KUBECONFIG.

With BERTH_KUBECONFIG set, no server is started: the tests run unchanged against that
cluster, as its admin, and clean up what they create (a namespace of their own, their
CRDs and cluster-scoped objects, named so they cannot collide with anything else).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth_lab.kube import KubeAPIServer
from berth_lab.kubeconfig import Kubectl

log = logging.getLogger("berth.tests.apiserver")


def existing_kubeconfig() -> Path | None:
    value = os.environ.get("BERTH_KUBECONFIG")
    return Path(value) if value else None


def _report(config: pytest.Config, line: str) -> None:
    # Shown even with -q and without -s: the start-up time is worth seeing every run.
    log.info(line)
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\n[apiserver] {line}")


@pytest.fixture(scope="session")
def kubectl(request: pytest.FixtureRequest) -> Iterator[Kubectl]:
    """kubectl as the cluster admin."""
    cache = Path(tempfile.mkdtemp(prefix="berth-kubectl-cache-"))
    existing = existing_kubeconfig()
    try:
        if existing is not None:
            _report(request.config, f"using the existing cluster of BERTH_KUBECONFIG={existing}")
            yield Kubectl(existing, cache_dir=cache)
            return
        with KubeAPIServer() as server:
            assert server.times is not None
            _report(
                request.config,
                f"kube-apiserver ready in {server.times.total:.2f}s "
                f"(etcd {server.times.etcd:.2f}s + apiserver {server.times.apiserver:.2f}s) "
                f"at {server.url}",
            )
            yield Kubectl(server.admin_kubeconfig, cache_dir=cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def suffix() -> str:
    """Makes every cluster-scoped name of this run unique on a shared cluster."""
    return secrets.token_hex(3)


@pytest.fixture(scope="session")
def namespace(kubectl: Kubectl, suffix: str) -> Iterator[str]:
    name = f"berth-test-{suffix}"
    kubectl("create", "namespace", name)
    yield name
    # Without a controller-manager the namespace stays Terminating; that is harmless.
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def server_version(kubectl: Kubectl) -> str:
    version: str = kubectl.json("version")["serverVersion"]["gitVersion"]
    return version
