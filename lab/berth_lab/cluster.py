"""berth on a Kubernetes API server, for the lab: CRDs, the chart's RBAC, the operator
running as its ServiceAccount (so a permission missing from the chart fails for real),
and a Machine per lab host."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from berth_lab import procs
from berth_lab.agents import agent_endpoint
from berth_lab.dns_service import GRACE_SECONDS as DNS_GRACE_SECONDS
from berth_lab.dns_service import lab_dns_server
from berth_lab.host import LabError
from berth_lab.kube import free_ports
from berth_lab.kube_tools import external_dns_crd, helm_binary
from berth_lab.kubeconfig import Kubectl, service_account_kubeconfig
from berth_lab.lab import Lab

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "berth"
# The generated CRDs, as `kubectl apply -f crds/` installs them (the chart templates a copy
# of the same files; tests/unit/test_crds_generated.py keeps the two equal).
CRDS = REPO_ROOT / "crds"
PEERING = "berth"
OPERATOR_NAMESPACE = "berth-system"
RELEASE = "berth"


def install_crds(kubectl: Kubectl) -> None:
    """berth's CRDs, external-dns's DNSEndpoint (berth writes its records), the peering."""
    for path in [*sorted(CRDS.glob("*.yaml")), external_dns_crd()]:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
        for crd in crds:
            _wait_not_terminating(kubectl, crd["metadata"]["name"])
        kubectl.apply(crds, "--server-side", "--force-conflicts")
        for crd in crds:
            kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                f"crd/{crd['metadata']['name']}",
            )
    # The named peering object the chart creates (a post-install hook there).
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering"}
    kubectl.apply({**peering, "metadata": {"name": PEERING}}, "--server-side", "--force-conflicts")


def _wait_not_terminating(
    kubectl: Kubectl, name: str, timeout: float = 60, kind: str = "crd"
) -> None:
    """An object being deleted must be gone before it is applied again: applying it
    meanwhile changes nothing, and the deletion then removes it for good. (Labs share
    host names, so one lab's Machines can still be going when the next lab's come.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = kubectl(
            "get", kind, name, "-o", "jsonpath={.metadata.deletionTimestamp}", check=False
        )
        if got.returncode != 0 or not got.stdout.strip():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{kind} {name} is still being deleted after {timeout:.0f}s")


def chart_rbac(chart: Path = CHART) -> list[dict[str, Any]]:
    """The chart's ServiceAccount, ClusterRole and binding, rendered by the real helm
    (chart: another tree's, as the operator benchmark compares two)."""
    out = subprocess.run(
        [
            *(str(helm_binary()), "template", RELEASE, str(chart)),
            *("--namespace", OPERATOR_NAMESPACE, "--set", f"peering.name={PEERING}"),
            # The lab's operator reads its certificates from files; these are not rendered.
            *(
                "--set",
                "operatorTLS.existingSecret=unused",
                "--set",
                "agentsCA.existingSecret=unused",
            ),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    return [d for d in yaml.safe_load_all(out) if d and d["kind"] in kinds]


class OperatorProcess:
    """`berth-operator run` as a process of this machine, as its ServiceAccount."""

    def __init__(
        self,
        kubeconfig: Path,
        tls_dir: Path,
        log_path: Path,
        namespaces: list[str],
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.extra_env = extra_env or {}
        self.kubeconfig, self.tls_dir, self.log_path = kubeconfig, tls_dir, log_path
        self.namespaces = namespaces
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port, self.health_port = free_ports(2)

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "BERTH_TLS_DIR": str(self.tls_dir),
            "BERTH_HEARTBEAT_SECONDS": "2",
            "BERTH_POLL_SECONDS": "1",
            "BERTH_METRICS_PORT": str(self.metrics_port),
            "BERTH_HEALTH_PORT": str(self.health_port),
            "BERTH_NAMESPACES": ",".join(self.namespaces),
            "BERTH_CRASH_FILE": str(self.crash_file),  # absent unless a test calls crash_at
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "berth_operator.cli", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        # Lab.down() finds it here if this process is gone (the demo's --keep).
        self.pidfile.write_text(f"{self.proc.pid}\n")

    @property
    def pidfile(self) -> Path:
        return self.log_path.with_suffix(".pid")

    @property
    def crash_file(self) -> Path:
        return self.log_path.with_suffix(".crash")

    def crash_at(self, point: str) -> None:
        """Make the operator exit as if killed when it reaches point (berth_common.crash)."""
        self.crash_file.write_text(point)

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until kopf's liveness endpoint answers: its watches stream, its handlers live."""
        assert self.proc is not None, "the operator is not running"
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        with httpx.Client(trust_env=False, timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    raise LabError(f"the operator exited {code}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get(url).status_code == 200:
                        return
                time.sleep(0.1)
        raise LabError(f"the operator is not healthy after {timeout:.0f}s; see {self.log_path}")

    def wait_exit(self, timeout: float) -> int:
        """Until the operator has exited (a crash point fired); its exit code."""
        assert self.proc is not None, "the operator is not running"
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up, as in a crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class LabCluster:
    """Install berth into a cluster (admin kubectl) and run its operator for a lab.

    namespaces: the ones whose placements the operator reconciles; empty: all of them,
    as the chart's default (watchNamespaces: [])."""

    def __init__(self, lab: Lab, kubectl: Kubectl, namespaces: list[str]) -> None:
        self.lab, self.kubectl, self.namespaces = lab, kubectl, namespaces
        self.dir = lab.plan.cluster_dir
        self.operator: OperatorProcess | None = None

    def up(self) -> LabCluster:
        self.dir.mkdir(parents=True, exist_ok=True)
        install_crds(self.kubectl)
        self.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
        self.kubectl.apply(chart_rbac())
        tls = self.dir / "operator-tls"
        tls.mkdir(exist_ok=True)
        pki = self.lab.pki
        for src, name in (
            (pki.ca.cert, "ca.crt"),
            (pki.client.cert, "tls.crt"),
            (pki.client.key, "tls.key"),
        ):
            shutil.copyfile(src, tls / name)
        # The sessions CA, as the chart mounts its Secret: kubectl berth logs/exec.
        sessions = self.dir / "sessions-ca"
        sessions.mkdir(exist_ok=True)
        shutil.copyfile(pki.sessions_ca.cert, sessions / "tls.crt")
        shutil.copyfile(pki.sessions_ca.key, sessions / "tls.key")
        for host in self.lab.hosts.values():
            _wait_not_terminating(self.kubectl, host.name, kind="machines.berth.dev")
            self.kubectl.apply(
                {
                    "apiVersion": "berth.dev/v1alpha1",
                    "kind": "Machine",
                    "metadata": {"name": host.name},
                    "spec": {"endpoint": agent_endpoint(host), "caBundle": pki.ca.cert.read_text()},
                }
            )
        self.start_operator()
        self.wait_machines_ready()
        return self

    @property
    def operator_pidfile(self) -> Path:
        return self.dir / "operator.pid"

    def start_operator(self) -> OperatorProcess:
        """The operator as the chart's ServiceAccount, with a token issued now: one
        restarted in a lab kept for hours must not get the first one's expired token."""
        kubeconfig = service_account_kubeconfig(
            self.kubectl, OPERATOR_NAMESPACE, RELEASE, self.dir / "operator.kubeconfig"
        )
        # The Kubernetes client writes the kubeconfig's CA to a temporary file that only a
        # clean exit removes: those of operators killed (restarts, down, crash tests) go
        # with the lab's state dir instead of piling up in /tmp.
        tmp = self.dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self.operator = OperatorProcess(
            kubeconfig,
            self.dir / "operator-tls",
            self.dir / "operator.log",
            self.namespaces,
            extra_env={
                **self.lab.plan.owner_env(),
                "TMPDIR": str(tmp),
                "BERTH_SESSIONS_CA_DIR": str(self.dir / "sessions-ca"),
                # spec.dns is Ready once the lab's named answers it (when LabDNS runs).
                "BERTH_DNS_CHECK_SERVER": "{}:{}".format(*lab_dns_server(self.lab.plan)),
                "BERTH_DNS_CHECK_GRACE_SECONDS": str(DNS_GRACE_SECONDS),
            },
        )
        self.operator.start()
        return self.operator

    def restart_operator(self, timeout: float = 60) -> OperatorProcess:
        """Stop the lab's operator if it runs (also one another process started: found by
        its pid file), start a new one, and wait until it is healthy."""
        if self.operator:
            self.operator.stop()
        # SIGTERM first: kopf then leaves the peering, which would otherwise keep the new
        # operator waiting until the old one's record expires.
        procs.kill_pidfile(self.operator_pidfile, "berth_operator", grace=20)
        operator = self.start_operator()
        operator.wait_healthy(timeout)
        return operator

    def wait_machines_ready(self, timeout: float = 60) -> None:
        names = [f"machine.berth.dev/{h}" for h in self.lab.hosts]
        self.kubectl("wait", "--for=condition=Ready", f"--timeout={int(timeout)}s", *names)

    def down(self) -> None:
        """Delete this cluster's placements and Machines while the operator still runs
        (kopf removes its finalizers), then stop the operator. Repositories stay on the
        hosts: a placement's deletionPolicy decides, and the default keeps them."""
        running = self.operator is not None and self.operator.proc is not None
        if running:
            scopes = [["-n", n] for n in self.namespaces] or [["--all-namespaces"]]
            for scope in scopes:
                self.kubectl(
                    "delete", "rp", "--all", *scope, "--timeout=60s", check=False, timeout=90
                )
            machines = [f"machine.berth.dev/{h}" for h in self.lab.hosts]
            self.kubectl("delete", *machines, "--timeout=60s", check=False, timeout=90)
        if self.operator:
            self.operator.stop()
