"""Clocks across a move between hosts of different uptimes (the lab's hosts each have
their own, UPTIME_DAYS): a restored process finds CLOCK_MONOTONIC and CLOCK_BOOTTIME
where it left them, paused for the downtime, not days behind or ahead."""

from __future__ import annotations

import time
import uuid

import pytest

from berth_agent.apps import clocks
from berth_common.agent_api.services import RepositoryServices
from berth_lab import Lab
from berth_lab.scratch import remove_everywhere
from migration.helpers import migrate

pytestmark = pytest.mark.migration


def uptime(lab: Lab, host: str) -> float:
    return float(lab.host(host).run(["cat", "/proc/uptime"]).stdout.split()[0])


def sampled(lab: Lab, host: str, name: str, after: float) -> list[clocks.Sample]:
    """The process's samples, once it has logged some later than the epoch `after`."""
    deadline = time.monotonic() + 30
    with lab.agent(host) as agent:
        while True:
            found = clocks.samples(agent.logs(name, clocks.NAME, tail=5000))
            if found and found[-1].realtime > after + 1:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no samples on {host} after {after}: {found[-3:]}")
            time.sleep(0.2)


def test_monotonic_and_boot_clocks_continue_on_a_host_of_another_uptime(lab: Lab) -> None:
    # The lab gives its hosts uptimes days apart: what a process meets on another machine.
    assert uptime(lab, "a") - uptime(lab, "b") > 86400
    name = f"clk{uuid.uuid4().hex[:8]}"
    services = RepositoryServices(services=[clocks.service()])
    try:
        with lab.agent("a") as a:
            guid = a.create(name, "2G", services=services.model_dump(mode="json")).guid
            a.up(name)
        sampled(lab, "a", name, after=time.time())

        state = migrate(lab, name, guid)

        assert state.result == "Succeeded", state.reason
        found = sampled(lab, "b", name, after=time.time())
        step = clocks.widest_step(found)
        uptimes = f"a {uptime(lab, 'a'):.0f} s, b {uptime(lab, 'b'):.0f} s"
        print(f"\nacross the move: {step}; downtime {state.downtime_seconds} s; "
              f"uptimes {uptimes}; last {found[-1]}")  # fmt: skip
        assert step.realtime >= (state.downtime_seconds or 0) * 0.5
        assert clocks.continued(step), step
        # Still on host-a's count, days ahead of host-b's own: the same process (one
        # started afresh on host-b would count from host-b's uptime).
        assert found[-1].monotonic - uptime(lab, "b") > 86400
    finally:
        remove_everywhere(lab, name)
