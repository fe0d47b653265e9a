"""Repositories that lab tests create, taken away again afterwards."""

from __future__ import annotations

from berth_agent.client import AgentAPIError
from berth_lab import Lab


def remove_everywhere(lab: Lab, name: str, hosts: tuple[str, ...] = ("a", "b")) -> None:
    """Take the repository down and delete it on each host that still has it."""
    for host in hosts:
        with lab.agent(host) as agent:
            try:
                agent.down(name)
                agent.delete(name, confirm=name)
            except AgentAPIError:
                pass  # not there (never moved there, or already gone)
