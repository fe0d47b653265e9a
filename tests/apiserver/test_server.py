"""The API server itself: authentication, RBAC on, and a stop that leaves nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from berth_lab import kube
from berth_lab.kube import KubeAPIServer
from berth_lab.kube_tools import KubeError
from berth_lab.kubeconfig import KubeClient, Kubectl, service_account_kubeconfig
from berth_lab.procs import alive

pytestmark = pytest.mark.apiserver

own_server_only = pytest.mark.skipif(
    bool(os.environ.get("BERTH_KUBECONFIG")),
    reason="tests the embedded server; BERTH_KUBECONFIG points at an existing cluster",
)


def test_admin_is_authenticated_by_client_certificate(kubectl: Kubectl) -> None:
    # Anything the tests do as admin relies on this; on the embedded server the admin is
    # a client certificate in system:masters.
    assert kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"


def test_service_account_token_authenticates_and_rbac_denies(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    config = service_account_kubeconfig(kubectl, namespace, "nobody", tmp_path / "sa")
    whoami = Kubectl(config)("auth", "whoami", "-o", "json")
    user = json.loads(whoami.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:nobody"
    with KubeClient(config) as client:
        # Authenticated (not 401) and unbound: RBAC must say no.
        response = client.request("GET", "/api/v1/namespaces")
        assert response.status_code == 403, response.text
        assert "cannot list resource" in response.json()["message"]


def test_a_forged_token_is_rejected(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    config = service_account_kubeconfig(kubectl, namespace, "forger", tmp_path / "sa")
    text = config.read_text()
    token = next(line.split(":", 1)[1].strip() for line in text.splitlines() if "token:" in line)
    # Same header and claims, other signature: the server must check it.
    forged = token[: token.rindex(".") + 1] + "A" * 86
    config.write_text(text.replace(token, forged))
    with KubeClient(config) as client:
        assert client.request("GET", "/api/v1/namespaces").status_code == 401


@own_server_only
def test_start_and_stop_leave_nothing_behind() -> None:
    server = KubeAPIServer().start()
    state_dir, pids = server.state_dir, server.pids
    assert set(pids) == {"etcd", "kube-apiserver"}
    assert all(alive(pid) for pid in pids.values())
    assert server.times is not None and server.times.total > 0
    assert "certificate-authority-data" in server.admin_kubeconfig.read_text()
    server.stop()
    assert not any(alive(pid) for pid in pids.values())
    assert not state_dir.exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(state_dir) not in mounts
    server.stop()  # a second stop is harmless


@own_server_only
def test_caller_state_dir_is_kept_and_stale_processes_are_reaped(tmp_path: Path) -> None:
    first = KubeAPIServer(tmp_path / "kube").start()
    stale = first.pids
    # As if the previous run had died without stop(): a new server on the same dir
    # must kill what the pid files name before starting its own.
    second = KubeAPIServer(tmp_path / "kube").start()
    current = second.pids
    try:
        assert not any(alive(pid) for pid in stale.values())
        assert Kubectl(second.admin_kubeconfig)("get", "--raw", "/readyz").stdout == "ok"
    finally:
        second.stop()
        first.stop()  # only collects its killed children: it signals no live pid
    assert (tmp_path / "kube" / "kube-apiserver.log").exists()
    assert not any(alive(pid) for pid in [*current.values(), *stale.values()])


def test_missing_binaries_say_how_to_build_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_KUBE_BIN", "/nonexistent")
    with pytest.raises(KubeError, match=r"hack/kube/build\.sh"):
        kube.find_binaries()
