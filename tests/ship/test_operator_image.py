"""The operator's container image: built here from a locally made base, run as the chart
runs it (uid 65532, read-only root filesystem, a tmpfs /tmp, no capabilities) against a
real API server.

The images are built by a private dockerd (berth_lab.images) whose data root keeps them
between runs: the first run on a machine debootstraps the base (about a minute), later
ones find everything cached and take seconds.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from berth_lab.agents import LabPKI
from berth_lab.cluster import (
    CRDS,
    OPERATOR_NAMESPACE,
    RELEASE,
    chart_rbac,
    install_crds,
)
from berth_lab.images import BuildDockerd, build_base, build_operator_image
from berth_lab.kube import KubeAPIServer, free_ports
from berth_lab.kubeconfig import Kubectl, service_account_kubeconfig

pytestmark = [
    pytest.mark.ship,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: dockerd and debootstrap"),
]

UID = 65532
PEERING = "berth"
KUBECONFIG_IN = "/etc/berth/kubeconfig"
TLS_IN = "/etc/berth/operator-tls"
T = TypeVar("T")


def report(config: pytest.Config, line: str) -> None:
    """A line on the terminal even without -s: build times are worth seeing every run."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\n[image] {line}")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def build_dockerd() -> Iterator[BuildDockerd]:
    with BuildDockerd() as dockerd:
        yield dockerd


@pytest.fixture(scope="module")
def operator_image(
    build_dockerd: BuildDockerd,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    logs = tmp_path_factory.mktemp("image-build")
    started = time.monotonic()
    build_base(build_dockerd, log_path=logs / "base.log")
    base_done = time.monotonic()
    image = build_operator_image(build_dockerd, log_path=logs / "operator.log")
    done = time.monotonic()
    size = int(build_dockerd.docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
    report(
        request.config,
        f"base {base_done - started:.1f}s, {image} {done - base_done:.1f}s "
        f"({size / 1e6:.0f} MB); build logs in {logs}",
    )
    return image


def test_help_prints_usage(build_dockerd: BuildDockerd, operator_image: str) -> None:
    proc = build_dockerd.docker("run", "--rm", operator_image, "--help", check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: berth-operator"), proc.stdout
    assert "--health-port" in proc.stdout


def test_image_runs_unprivileged_and_exposes_its_ports(
    build_dockerd: BuildDockerd, operator_image: str
) -> None:
    config = build_dockerd.docker(
        "image", "inspect", "--format", "{{json .Config}}", operator_image
    )
    settings = json.loads(config.stdout)
    assert settings["User"] == f"{UID}:{UID}"
    assert set(settings["ExposedPorts"]) == {"9090/tcp", "8080/tcp"}
    assert settings["Entrypoint"][-1] == "berth-operator"


# -- start-up against a real API server -----------------------------------------------


def ensure_peering(kubectl: Kubectl) -> None:
    """The ClusterKopfPeering the operator meets in (install_crds makes it nowadays)."""
    if kubectl("get", "crd", "clusterkopfpeerings.kopf.dev", check=False).returncode != 0:
        for path in sorted(CRDS.glob("*kopf*.yaml")):
            kubectl("apply", "--server-side", "-f", str(path))
        crd = "crd/clusterkopfpeerings.kopf.dev"
        kubectl("wait", "--for=condition=Established", "--timeout=30s", crd)
    if kubectl("get", "clusterkopfpeering", PEERING, check=False).returncode != 0:
        peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering"}
        kubectl.apply({**peering, "metadata": {"name": PEERING}})


def operator_files(kubectl: Kubectl, workdir: Path) -> tuple[Path, Path]:
    """The ServiceAccount kubeconfig and the TLS dir, readable by uid 65532 only, as the
    chart's projected volume (mode 0440, fsGroup) gives them to the pod."""
    kubeconfig = service_account_kubeconfig(
        kubectl, OPERATOR_NAMESPACE, RELEASE, workdir / "operator.kubeconfig"
    )
    pki = LabPKI(workdir)
    pki.ensure([])
    tls = workdir / "operator-tls"
    tls.mkdir()
    shutil.copyfile(pki.ca.cert, tls / "ca.crt")
    shutil.copyfile(pki.client.cert, tls / "tls.crt")
    shutil.copyfile(pki.client.key, tls / "tls.key")
    for path in (kubeconfig, *tls.iterdir()):
        os.chown(path, UID, UID)
        path.chmod(0o440)
    os.chown(tls, UID, UID)
    tls.chmod(0o550)
    return kubeconfig, tls


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line a JSON object with the fields of berth's structured logs."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
        assert isinstance(record, dict), line
        assert {"ts", "level", "logger", "msg"} <= set(record), line
        records.append(record)
    return records


class OperatorContainer:
    """`docker run -d` of the image as the chart runs it; logs kept when it is removed."""

    def __init__(self, dockerd: BuildDockerd, image: str, log_path: Path) -> None:
        self.dockerd, self.image, self.log_path = dockerd, image, log_path
        self.name = f"berth-operator-test-{secrets.token_hex(3)}"
        self.health_port, self.metrics_port = free_ports(2)
        self.started = 0.0

    def run(self, kubeconfig: Path, tls: Path) -> None:
        self.started = time.monotonic()
        self.dockerd.docker(
            "run", "-d", "--name", self.name,
            "--network", "host",
            "--read-only", "--tmpfs", "/tmp",
            "--user", f"{UID}:{UID}",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-v", f"{kubeconfig}:{KUBECONFIG_IN}:ro",
            "-v", f"{tls}:{TLS_IN}:ro",
            "-e", f"KUBECONFIG={KUBECONFIG_IN}",
            "-e", f"BERTH_TLS_DIR={TLS_IN}",
            "-e", f"BERTH_HEALTH_PORT={self.health_port}",
            "-e", f"BERTH_METRICS_PORT={self.metrics_port}",
            "-e", "BERTH_HEARTBEAT_SECONDS=2",
            self.image,
        )  # fmt: skip

    def logs(self) -> str:
        proc = self.dockerd.docker("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def running(self) -> bool:
        state = self.dockerd.docker(
            "inspect", "--format", "{{.State.Running}}", self.name, check=False
        )
        return state.stdout.strip() == "true"

    def stop(self) -> int:
        """docker stop (SIGTERM through tini); returns the operator's exit code."""
        self.dockerd.docker("stop", "--time", "20", self.name, check=False, timeout=60)
        code = self.dockerd.docker(
            "inspect", "--format", "{{.State.ExitCode}}", self.name, check=False
        ).stdout.strip()
        return int(code) if code.lstrip("-").isdigit() else -1

    def remove(self) -> None:
        self.log_path.write_text(self.logs())
        self.dockerd.docker("rm", "--force", self.name, check=False)


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Kubectl]:
    with KubeAPIServer(tmp_path / "kube") as server:
        yield server.kubectl()


def test_operator_starts_serves_and_writes_status(
    build_dockerd: BuildDockerd,
    operator_image: str,
    kube: Kubectl,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    install_crds(kube)
    ensure_peering(kube)
    kube("create", "namespace", OPERATOR_NAMESPACE, check=False)
    kube.apply(chart_rbac())
    kubeconfig, tls = operator_files(kube, tmp_path)
    # Its agent is unreachable: nothing listens on this port.
    (agent_port,) = free_ports(1)
    machine = {"apiVersion": "berth.dev/v1alpha1", "kind": "Machine"}
    endpoint = f"https://127.0.0.1:{agent_port}"
    kube.apply({**machine, "metadata": {"name": "host-gone"}, "spec": {"endpoint": endpoint}})

    container = OperatorContainer(build_dockerd, operator_image, tmp_path / "operator.log")
    container.run(kubeconfig, tls)
    try:
        check_running_operator(container, kube, request)
        exit_code = container.stop()
        assert exit_code == 0, f"the operator exited {exit_code} on SIGTERM"
        stopping = [r["msg"] for r in json_lines(container.logs())]
        assert any("Operator is stopping" in m for m in stopping), stopping[-5:]
    except BaseException:
        print(f"--- operator start-up log ({container.name}) ---\n{container.logs()[-8000:]}")
        raise
    finally:
        container.remove()
    print(f"operator log: {container.log_path}")


def check_running_operator(
    container: OperatorContainer, kube: Kubectl, request: pytest.FixtureRequest
) -> None:
    http = httpx.Client(timeout=2, trust_env=False)

    def healthy() -> bool | None:
        if not container.running():
            raise AssertionError("the operator container exited")
        try:
            return http.get(f"http://127.0.0.1:{container.health_port}/healthz").status_code == 200
        except httpx.TransportError:
            return None

    with http:
        wait_for("GET /healthz answering 200", lambda: healthy() or None, timeout=90)
        ready_s = time.monotonic() - container.started
        metrics = http.get(f"http://127.0.0.1:{container.metrics_port}/")
        assert metrics.status_code == 200
        assert "berth_migrations_total" in metrics.text
        assert "process_resident_memory_bytes" in metrics.text

    # kopf started serving, in structured JSON lines.
    messages = {(r["logger"], r["msg"]) for r in json_lines(container.logs())}
    assert ("kopf.activities.startup", "Activity 'configure' succeeded.") in messages
    assert any(m == "Initial authentication has finished." for _, m in messages), messages

    # Its entry in the peering object: named after the image's user (kopf asks for it).
    def peer() -> str | None:
        peering = kube.json("get", "clusterkopfpeering", PEERING)
        status: dict[str, Any] = peering.get("status") or {}
        return next((p for p, v in status.items() if isinstance(v, dict) and "priority" in v), None)

    peer_id = wait_for("the operator's entry in ClusterKopfPeering berth", peer, timeout=30)
    assert peer_id.startswith("berth@"), peer_id

    # Its heartbeat of the Machine: the agent does not answer, so Ready=False.
    def ready_condition() -> dict[str, Any] | None:
        machine = kube.json("get", "machine", "host-gone")
        for condition in (machine.get("status") or {}).get("conditions", []):
            if condition.get("type") == "Ready":
                return dict(condition)
        return None

    condition = wait_for("the Machine's Ready condition", ready_condition, timeout=30)
    assert condition["status"] == "False", condition
    assert condition["reason"] == "AgentUnreachable", condition
    # It reached the network: the mounted certificates were readable.
    assert "ConnectError" in condition["message"], condition
    report(request.config, f"operator container healthy {ready_s:.1f}s after docker run")
