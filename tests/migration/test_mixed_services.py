"""A repository holding an application that resumes (labelled for checkpoint) beside one
that restarts (not labelled), moved live between real lab hosts: on the target the first
is the same process, the second a new one."""

from __future__ import annotations

import time
import uuid

import pytest

from berth_agent.apps import pulse
from berth_agent.runtime.images import BUSYBOX_IMAGE
from berth_common.agent_api.services import RepositoryServices, ServiceSpec
from berth_lab import Lab
from berth_lab.scratch import remove_everywhere
from migration.helpers import migrate

pytestmark = pytest.mark.migration
# Says when it started, then idles; stops on SIGTERM (a shell as PID 1 would ignore it).
SIDECAR = "trap 'exit 0' TERM; echo started; while :; do sleep 0.2; done"


def pulse_counters(lab: Lab, host: str, name: str, at_least: int) -> list[int]:
    """pulse's counters in its log on host, once the last is at least at_least."""
    deadline = time.monotonic() + 30
    with lab.agent(host) as agent:
        while True:
            seen = pulse.counters(agent.logs(name, "pulse", tail=1000))
            if seen and seen[-1] >= at_least:
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"pulse on {host} did not reach {at_least}: {seen[-3:]}")
            time.sleep(0.2)


def test_labelled_containers_resume_and_the_others_restart(lab: Lab) -> None:
    name = f"mix{uuid.uuid4().hex[:8]}"
    services = RepositoryServices(
        services=[
            *pulse.services(interval=0.2, host_port=18990).services,
            ServiceSpec(name="sidecar", image=BUSYBOX_IMAGE, command=["sh", "-c", SIDECAR]),
        ]
    )
    try:
        with lab.agent("a") as a:
            guid = a.create(name, "1G", services=services.model_dump(mode="json")).guid
            a.up(name)
        before = pulse_counters(lab, "a", name, 3)[-1]

        state = migrate(lab, name, guid)

        assert state.result == "Succeeded", state.reason
        assert (state.stopped, state.killed) == (["sidecar"], [])
        # pulse resumed: its counter went on from where it was, never from 1 again.
        seen = pulse_counters(lab, "b", name, before + 3)
        assert seen == list(range(seen[0], seen[0] + len(seen))), seen
        # The sidecar restarted: its log (which moved with the repository) says so twice.
        with lab.agent("b") as b:
            lines = b.logs(name, "sidecar", tail=100)
            containers = {c.name: c.state for c in b.status(name).containers}
        assert sum(line.endswith("started") for line in lines) == 2, lines
        assert containers == {"pulse": "running", "sidecar": "running"}
    finally:
        remove_everywhere(lab, name)
