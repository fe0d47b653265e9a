"""The lab's certificate authority and the real `berth-agent serve` on every host."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from berth_agent.client import AgentClient
from berth_common.pki import CertFiles, create_ca, issue
from berth_lab.host import LabError, LabHost
from berth_lab.plan import AGENT_PORT

CLIENT_CN = "berth-operator"


class LabPKI:
    """CA, one server certificate per host, and a client certificate for the operator."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "pki"
        self.ca = CertFiles(self.dir / "ca.crt", self.dir / "ca.key")
        self.client = CertFiles(self.dir / "operator.crt", self.dir / "operator.key")

    def host(self, name: str) -> CertFiles:
        return CertFiles(self.dir / f"{name}.crt", self.dir / f"{name}.key")

    def ensure(self, hosts: list[LabHost]) -> None:
        if not self.ca.cert.exists():
            create_ca(self.ca, cn="berth lab CA")
        if not self.client.cert.exists():
            issue(self.ca, self.client, CLIENT_CN, org="berth")
        for host in hosts:
            if not self.host(host.name).cert.exists():
                issue(
                    self.ca, self.host(host.name), host.name, dns=(host.name,), ips=(host.address,)
                )


def agent_endpoint(host: LabHost) -> str:
    return f"https://{host.address}:{AGENT_PORT}"


def start_agent(host: LabHost, pki: LabPKI, timeout: float = 30) -> int:
    certs = pki.host(host.name)
    argv = [
        sys.executable,
        "-m",
        "berth_agent.cli",
        "--log-format",
        "json",
        "serve",
        "--name",
        host.name,
        "--listen",
        host.address,
        "--port",
        str(AGENT_PORT),
        "--tls-cert",
        str(certs.cert),
        "--tls-key",
        str(certs.key),
        "--client-ca",
        str(pki.ca.cert),
    ]
    proc = host.spawn(argv, host.plan.state_dir / "agent.log")
    deadline = time.monotonic() + timeout
    with agent_client(host, pki, timeout=2) as client:
        while True:
            try:
                client.healthz()
                return proc.pid
            except httpx.TransportError:
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
