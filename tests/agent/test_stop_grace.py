"""Containers a move stops (not checkpoint): their own stop signal, then the placement's
grace period, then SIGKILL; on a real lab host's dockerd."""

from __future__ import annotations

import pytest

from berth_agent.runtime.images import BUSYBOX_IMAGE
from berth_common.agent_api.services import RepositoryServices, ServiceSpec
from berth_lab import Lab

pytestmark = pytest.mark.agent
LOOP = "while :; do sleep 0.2; done"


def test_a_stopped_container_gets_its_grace_period_then_is_killed(lab: Lab) -> None:
    services = RepositoryServices(
        services=[
            # A shell as PID 1 ignores SIGTERM: only the SIGKILL after the grace ends it.
            ServiceSpec(name="stubborn", image=BUSYBOX_IMAGE, command=["sh", "-c", LOOP]),
            # Stopped by the signal it asked for, which it handles.
            ServiceSpec(
                name="polite",
                image=BUSYBOX_IMAGE,
                command=["sh", "-c", f"trap 'exit 0' INT; {LOOP}"],
                stop_signal="SIGINT",
            ),
        ]
    )
    with lab.agent("a") as agent:
        agent.create("grace", "1G", services=services.model_dump(mode="json"))
        try:
            agent.up("grace")
            frozen = agent.freeze("grace", "m-grace-1", checkpoint=False, stop_grace=2)
            assert sorted(frozen.stopped) == ["polite", "stubborn"]
            assert frozen.killed == ["stubborn"]
            # The placement's 2 s, not docker's 10 s; the polite one did not wait for it.
            assert 2 <= frozen.durations["stop:stubborn"] < 10
            assert frozen.durations["stop:polite"] < 2
            agent.resume("grace", "m-grace-1")
            running = {c.name: c.state for c in agent.status("grace").containers}
            assert running == {"polite": "running", "stubborn": "running"}
        finally:
            agent.down("grace")
            agent.delete("grace", confirm="grace")
