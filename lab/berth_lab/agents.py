"""The lab's certificate authority and the real `berth-agent serve` on every host."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from berth_agent.config import AgentConfig, TLSConfig
from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.errors import AgentUnreachable
from berth_common.pki import METRICS_CN, METRICS_ORGANIZATION, CertFiles, create_ca, issue
from berth_lab.host import LabError, LabHost
from berth_lab.plan import AGENT_PORT

if TYPE_CHECKING:
    from berth_lab.lab import Lab

CLIENT_CN = "berth-operator"
ETC_BERTH = Path("/etc/berth")


class LabPKI:
    """CA, one server certificate per host, a client certificate for the operator, and
    the sessions CA that signs people's session certificates (kubectl berth logs/exec)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "pki"
        self.ca = CertFiles(self.dir / "ca.crt", self.dir / "ca.key")
        self.client = CertFiles(self.dir / "operator.crt", self.dir / "operator.key")
        self.sessions_ca = CertFiles(self.dir / "sessions-ca.crt", self.dir / "sessions-ca.key")
        self.metrics = CertFiles(self.dir / "metrics.crt", self.dir / "metrics.key")  # Prometheus

    def host(self, name: str) -> CertFiles:
        return CertFiles(self.dir / f"{name}.crt", self.dir / f"{name}.key")

    def ensure(self, hosts: list[LabHost]) -> None:
        if not self.ca.cert.exists():
            create_ca(self.ca, cn="berth lab CA")
        if not self.sessions_ca.cert.exists():
            create_ca(self.sessions_ca, cn="berth lab sessions CA")
        if not self.client.cert.exists():
            issue(self.ca, self.client, CLIENT_CN, org="berth")
        if not self.metrics.cert.exists():
            issue(self.ca, self.metrics, METRICS_CN, org=METRICS_ORGANIZATION)
        for host in hosts:
            if not self.host(host.name).cert.exists():
                issue(
                    self.ca, self.host(host.name), host.name, dns=(host.name,), ips=(host.address,)
                )


def agent_endpoint(host: LabHost) -> str:
    return f"https://{host.address}:{AGENT_PORT}"


def write_agent_config(host: LabHost, pki: LabPKI, fault_injection: bool) -> None:
    """The host's own /etc/berth, as on a real machine: agent.yaml and its certificates."""
    etc = host.plan.private_dir(ETC_BERTH)
    (etc / "tls").mkdir(parents=True, exist_ok=True)
    certs = pki.host(host.name)
    for src, name in (
        (certs.cert, "agent.crt"),
        (certs.key, "agent.key"),
        (pki.ca.cert, "ca.crt"),
        (pki.sessions_ca.cert, "sessions-ca.crt"),
    ):
        shutil.copyfile(src, etc / "tls" / name)
    config = AgentConfig(
        name=host.name,
        listen=host.address,
        port=AGENT_PORT,
        tls=TLSConfig(
            cert=ETC_BERTH / "tls/agent.crt",
            key=ETC_BERTH / "tls/agent.key",
            client_ca=ETC_BERTH / "tls/ca.crt",
            session_ca=ETC_BERTH / "tls/sessions-ca.crt",
        ),
        uplink="eth0",  # every lab host's link to the lab's bridge (lab.py)
        fault_injection=fault_injection,
    )
    (etc / "agent.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))


def start_agent(
    host: LabHost,
    pki: LabPKI,
    fault_injection: bool = False,
    timeout: float = 30,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start `berth-agent serve` inside the host and wait until it answers over mTLS;
    env: variables added to this process's (the lab's mark, TMPDIR)."""
    write_agent_config(host, pki, fault_injection)
    argv = [sys.executable, "-m", "berth_agent.cli", "--log-format", "json", "serve"]
    proc = host.spawn(argv, host.plan.state_dir / "agent.log", env=env)
    deadline = time.monotonic() + timeout
    with agent_client(host, pki, timeout=2) as client:
        while True:
            try:
                client.healthz()
                return proc.pid
            except AgentUnreachable:
                if proc.poll() is not None:
                    raise LabError(
                        f"{host.name}: berth-agent exited; see {host.plan.state_dir / 'agent.log'}"
                    ) from None
                if time.monotonic() > deadline:
                    raise LabError(
                        f"{host.name}: berth-agent not answering after {timeout:.0f}s"
                    ) from None
                time.sleep(0.1)


def agent_client(host: LabHost, pki: LabPKI, timeout: float = 120) -> AgentClient:
    return AgentClient(
        agent_endpoint(host), pki.ca.cert, pki.client.cert, pki.client.key, timeout=timeout
    )


class LabAgents:
    """The migration driver's view of the lab: each host's agent, by host name."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def client(self, machine: str) -> AgentClient:
        return self.lab.agent(machine)

    def endpoint(self, machine: str) -> str:
        return agent_endpoint(self.lab.host(machine))
