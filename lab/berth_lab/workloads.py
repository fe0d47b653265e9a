"""The application the fault tests and the downtime bench move, pulse beside ledger
(berth_agent.apps), and reading ledger's records and acknowledgements on a lab host."""

from __future__ import annotations

from berth_agent.apps import ledger, pulse
from berth_common.agent_api.services import RepositoryServices
from berth_lab.lab import Lab

DOCKER = ["env", "DOCKER_CLI_EXPERIMENTAL=enabled", "/usr/bin/docker"]


def pulse_and_ledger(
    host_port: int, ledger_interval: float = ledger.INTERVAL_S
) -> RepositoryServices:
    """pulse (a counter held only in memory, answering on host_port) and ledger, both
    checkpointed: one repository."""
    beat = pulse.services(interval=0.2, host_port=host_port)
    return RepositoryServices(services=[*beat.services, ledger.service(ledger_interval)])


def guid(lab: Lab, host: str, name: str) -> str:
    with lab.agent(host) as agent:
        return str(next(r.guid for r in agent.repositories() if r.name == name))


def ledger_acks(lab: Lab, host: str, name: str) -> list[int]:
    """The records ledger acknowledged in its log (the log travels with the repository)."""
    with lab.agent(host) as agent:
        return ledger.acks(agent.logs(name, "ledger", tail=10000))


def ledger_records(lab: Lab, host: str, name: str) -> list[int]:
    """The records in ledger's file, read through the repository's dockerd on host."""
    sock = ["-H", f"unix:///run/berth/{guid(lab, host, name)}/docker.sock"]
    text = lab.host(host).run([*DOCKER, *sock, "exec", "ledger", "cat", ledger.FILE]).stdout
    return ledger.records(text.decode())
