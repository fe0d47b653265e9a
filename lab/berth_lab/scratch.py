"""Labs and repositories made for one test or benchmark, taken away again after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from berth_common.agent_api.errors import AgentRefused
from berth_lab.lab import Lab
from berth_lab.plan import plan_lab


@contextmanager
def three_hosts(name: str, datastore_size: str) -> Iterator[Lab]:
    """A lab of its own: two hosts to move between, one for the clients."""
    Lab(plan_lab(name, hosts=3)).down()  # a previous run that was killed may have left it
    running = Lab(plan_lab(name, hosts=3, datastore_size=datastore_size)).up()
    try:
        yield running
    finally:
        running.down()


def remove_everywhere(lab: Lab, name: str, hosts: tuple[str, ...] = ("a", "b")) -> None:
    """Take the repository down and delete it on each host that still has it."""
    for host in hosts:
        with lab.agent(host) as agent:
            try:
                agent.down(name)
                agent.delete(name, confirm=name)
            except AgentRefused:
                pass  # not there (never moved there, or already gone)
