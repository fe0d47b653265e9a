"""A new host joins, runs a repository, is upgraded and leaves — the documented steps
(docs/install.md), on a lab host of its own, with a real API server and operator.

The admin side: `kubectl berth pki init`, `kubectl berth enroll` (bundle + Machine). The
host side: `berth-agent install --bundle` into the host's own /etc/berth, the installed
unit checked by `systemd-analyze verify` and started by its ExecStart line (this machine
has no systemd as PID 1), an upgrade that restarts only the agent, and `uninstall`.
"""

from __future__ import annotations

import io
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth_agent.apps import pulse
from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.errors import AgentUnreachable
from berth_lab import Lab
from berth_lab.cluster import (
    OPERATOR_NAMESPACE,
    RELEASE,
    OperatorProcess,
    chart_rbac,
    install_crds,
)
from berth_lab.host import LabHost
from berth_lab.kube import KubeAPIServer
from berth_lab.kubeconfig import Kubectl, service_account_kubeconfig
from berth_lab.plan import plan_lab
from e2e.helpers import condition, create_pulse, placement, until

pytestmark = pytest.mark.ship

BIN = Path(sys.executable).parent
MACHINE = "inst-a"
APPS = "apps"


@dataclass
class Joining:
    """A lab host with nothing of berth on it, and a cluster ready to take it."""

    lab: Lab
    host: LabHost
    kubectl: Kubectl
    pki: Path
    work: Path

    def kubectl_berth(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "kubectl-berth"), *args, "--kubeconfig", str(self.kubectl.kubeconfig)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    def agent_cli(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return self.host.run([str(BIN / "berth-agent"), *args], check=False)

    def agent(self) -> AgentClient:
        pki = self.pki
        endpoint = f"https://{self.host.address}:7443"
        return AgentClient(endpoint, pki / "ca.crt", pki / "operator.crt", pki / "operator.key")


@pytest.fixture(scope="module")
def joining(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Joining]:
    work = tmp_path_factory.mktemp("install")
    Lab(plan_lab("inst", hosts=1)).down()  # a killed earlier run may have left it
    lab = Lab(plan_lab("inst", hosts=1, datastore_size="4G"), agents=False).up()
    operator: OperatorProcess | None = None
    try:
        with KubeAPIServer() as server:
            kubectl = server.kubectl()
            pki = work / "pki"
            init = subprocess.run(
                [str(BIN / "kubectl-berth"), "pki", "init", str(pki)],
                capture_output=True,
                text=True,
            )
            assert init.returncode == 0, init.stderr
            install_crds(kubectl)
            kubectl("create", "namespace", OPERATOR_NAMESPACE)
            kubectl("create", "namespace", APPS)
            kubectl.apply(chart_rbac())
            sa = service_account_kubeconfig(
                kubectl, OPERATOR_NAMESPACE, RELEASE, work / "operator.kubeconfig"
            )
            tls = work / "operator-tls"
            tls.mkdir()
            for src, name in (("ca.crt", "ca.crt"), ("operator.crt", "tls.crt"),
                              ("operator.key", "tls.key")):  # fmt: skip
                shutil.copyfile(pki / src, tls / name)
            operator = OperatorProcess(sa, tls, work / "operator.log", [APPS])
            operator.start()
            yield Joining(lab, lab.host("a"), kubectl, pki, work)
            kubectl("delete", "rp", "--all", "-n", APPS, "--timeout=60s", check=False, timeout=90)
    finally:
        if operator is not None:
            operator.stop()
        lab.down()


def test_enroll_refuses_bad_input_and_changes_nothing(joining: Joining) -> None:
    out = joining.work / "bad.tar"
    for args, complaint in (
        (["Bad_Name", "--address", "10.0.0.1"], "invalid machine name"),
        (["ok-name", "--address", "10.0.0.1;reboot"], "invalid address"),
        (["ok-name", "--address", "10.0.0.1", "--port", "0"], "invalid port"),
    ):
        result = joining.kubectl_berth(
            "enroll", *args, "--pki", str(joining.pki), "--out", str(out)
        )
        assert result.returncode == 1 and complaint in result.stderr, result.stderr
        assert not out.exists()
    no_ca = joining.kubectl_berth("enroll", "ok-name", "--address", "10.0.0.1",
                                  "--pki", str(joining.work), "--out", str(out))  # fmt: skip
    assert no_ca.returncode == 1 and "pki init" in no_ca.stderr
    assert joining.kubectl("get", "machine.berth.dev", "ok-name", check=False).returncode != 0


def test_a_new_host_joins_runs_a_repository_is_upgraded_and_leaves(joining: Joining) -> None:
    host, kubectl = joining.host, joining.kubectl
    bundle = joining.work / f"{MACHINE}.tar"

    # Admin: the host's certificate bundle, and its Machine.
    enroll = joining.kubectl_berth("enroll", MACHINE, "--address", host.address,
                                   "--pki", str(joining.pki), "--out", str(bundle))  # fmt: skip
    assert enroll.returncode == 0, enroll.stderr
    print(enroll.stdout)
    assert bundle.stat().st_mode & 0o077 == 0, "the bundle holds a private key"
    machine = kubectl.json("get", "machine.berth.dev", MACHINE, "-o", "json")
    assert machine["spec"]["endpoint"] == f"https://{host.address}:7443"

    # A tampered bundle is refused before anything is written.
    tampered = joining.work / "tampered.tar"
    with tarfile.open(bundle) as src, tarfile.open(tampered, "w") as dst:
        for info in src.getmembers():
            data = src.extractfile(info)
            assert data is not None
            if info.name == "ca.crt":  # another CA: agent.crt is no longer its
                other = joining.work / "other"
                subprocess.run([str(BIN / "kubectl-berth"), "pki", "init", str(other)], check=True,
                               capture_output=True)  # fmt: skip
                payload = (other / "ca.crt").read_bytes()
                info.size = len(payload)
                dst.addfile(info, io.BytesIO(payload))
            else:
                dst.addfile(info, data)
    refused = joining.agent_cli("install", "--bundle", str(tampered), "--no-start")
    assert refused.returncode == 1 and b"not signed by ca.crt" in refused.stderr
    assert host.run(["test", "-e", "/etc/berth/agent.yaml"], check=False).returncode != 0

    # Host: install from the bundle. The unit goes to a directory of the test's own.
    systemd_dir = joining.work / "systemd"
    installed = joining.agent_cli("install", "--bundle", str(bundle),
                                  "--systemd-dir", str(systemd_dir), "--no-start")  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    print(installed.stdout.decode())
    unit = systemd_dir / "berth-agent.service"
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                            capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    key_mode = host.run(["stat", "-c", "%a", "/etc/berth/tls/agent.key"]).stdout.strip()
    assert key_mode == b"600"

    agent = start_from_unit(joining, unit)
    kubectl("wait", "--for=condition=Ready", "--timeout=60s", f"machine.berth.dev/{MACHINE}")

    # It takes a repository: pulse, placed on the new machine.
    create_pulse(kubectl, APPS, "pulse", MACHINE, deletionPolicy="Delete")
    kubectl("wait", "-n", APPS, "--for=condition=Ready", "--timeout=120s", "rp/pulse", timeout=150)
    before = counter(joining)

    # Upgrade: install again (same machine: settings kept, certificates renewed) and
    # restart only the agent, as systemctl restart does with KillMode=process.
    upgraded = joining.agent_cli("install", "--bundle", str(bundle),
                                 "--systemd-dir", str(systemd_dir), "--no-start")  # fmt: skip
    assert upgraded.returncode == 0 and b"agent upgraded" in upgraded.stdout
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=30)
    agent = start_from_unit(joining, unit)
    after = until("pulse counting past the restart", lambda: (c := counter(joining)) > before and c)
    assert after > before, "the repository kept running through the agent's upgrade"
    kubectl("wait", "--for=condition=Ready", "--timeout=60s", f"machine.berth.dev/{MACHINE}")
    # The operator may have seen the agent away for a moment; it reports Ready again.
    ready = until("pulse Ready again", lambda: ready_condition(kubectl), timeout=60, every=0.5)
    print("after the upgrade:", ready)

    # Uninstall is refused while the repository runs here.
    refused = joining.agent_cli("uninstall", "--systemd-dir", str(systemd_dir))
    assert (
        refused.returncode == 1 and b"repositories still run on this host: pulse" in refused.stderr
    )
    assert unit.exists()

    # Moved away (here: deleted with its placement), the host leaves cleanly.
    kubectl("delete", "-n", APPS, "rp/pulse", "--timeout=90s", timeout=120)
    removed = joining.agent_cli("uninstall", "--systemd-dir", str(systemd_dir))
    assert removed.returncode == 0, removed.stderr
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=30)
    assert not unit.exists()
    assert host.run(["test", "-e", "/etc/berth/tls"], check=False).returncode != 0
    kubectl("delete", "machine.berth.dev", MACHINE, "--timeout=60s")


def start_from_unit(joining: Joining, unit: Path) -> subprocess.Popen[bytes]:
    """What systemd would run: the unit's ExecStart, with its Environment, in the host."""
    lines = unit.read_text().splitlines()
    (exec_start,) = [
        line.removeprefix("ExecStart=") for line in lines if line.startswith("ExecStart=")
    ]
    env = [line.removeprefix("Environment=") for line in lines if line.startswith("Environment=")]
    proc = joining.host.spawn(["env", *env, *shlex.split(exec_start)], joining.work / "agent.log")
    with joining.agent() as client:

        def answers() -> bool:
            try:
                return bool(client.healthz().machine == MACHINE)
            except AgentUnreachable:
                assert proc.poll() is None, (joining.work / "agent.log").read_text()[-3000:]
                return False

        until("the installed agent answering", answers, timeout=30, every=0.2)
    return proc


def counter(joining: Joining) -> int:
    with joining.agent() as client:
        counts = [count for _, count in pulse.beats(client.logs("pulse", "pulse", tail=50))]
    return max(counts, default=0)


def ready_condition(kubectl: Kubectl) -> dict[str, str] | None:
    ready = condition(placement(kubectl, APPS, "pulse"), "Ready")
    print("pulse Ready:", ready)
    return ready if ready.get("status") == "True" else None
