"""The migration driver moving pulse between real lab hosts."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from berth_agent.apps import pulse
from berth_common.agent_api.errors import AgentRefused
from berth_lab import Lab
from berth_lab.agents import LabAgents
from berth_lab.leftovers import checkpoint_copies
from berth_lab.scratch import remove_everywhere
from berth_operator.migration.driver import MigrationDriver
from berth_operator.migration.listener import Unrecorded
from berth_operator.migration.state import MigrationState, Mode, Phase
from migration.helpers import migrate

pytestmark = pytest.mark.migration


@pytest.fixture
def app(lab: Lab) -> Iterator[tuple[str, str]]:
    name = f"m{uuid.uuid4().hex[:8]}"
    with lab.agent("a") as a:
        guid = a.create(name, "1G", services=pulse.services(interval=0.2).model_dump()).guid
        a.up(name, wait_answer=30)
    yield name, guid
    remove_everywhere(lab, name)


def counters_on(lab: Lab, host: str, name: str) -> list[int]:
    with lab.agent(host) as agent:
        return [c for _, c in pulse.beats(agent.logs(name, "pulse", tail=2000))]


def test_live_migration_keeps_the_counter_and_measures_downtime(
    lab: Lab, app: tuple[str, str]
) -> None:
    name, guid = app
    time.sleep(1)
    state = migrate(lab, name, guid)
    assert state.result == "Succeeded", state.reason
    assert state.phase == Phase.SUCCEEDED and state.downtime_seconds is not None
    assert 0 < state.downtime_seconds < 10
    assert state.bulk_rounds and state.delta_bytes > 0
    time.sleep(1)
    seen = counters_on(lab, "b", name)
    assert seen == list(range(1, seen[-1] + 1)), "the counter restarted or skipped"
    with lab.agent("a") as a:
        source = a.status(name)
        assert not source.mounted and not source.docker.running
        assert source.moved_to == "host-b"
        with pytest.raises(AgentRefused, match="stale"):
            a.up(name)  # the old copy is not started by mistake
    assert_move_left_no_checkpoint(lab, "b", guid)


def assert_move_left_no_checkpoint(lab: Lab, target: str, guid: str, timeout: float = 10) -> None:
    """No copy of the checkpoint anywhere a restore puts one (the agent removes docker's
    copies in a thread beside the restore), and none in the running repository."""
    deadline = time.monotonic() + timeout
    while (copies := checkpoint_copies(lab.plan.state_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert copies == []
    containers = lab.host(target).plan.datastore_mount / "mounts" / guid / "docker" / "containers"
    assert list(containers.glob("*/checkpoints/*")) == []


def test_cold_migration_restarts_the_counter(lab: Lab, app: tuple[str, str]) -> None:
    name, guid = app
    time.sleep(1)
    state = migrate(lab, name, guid, Mode.COLD)
    assert state.result == "Succeeded", state.reason
    time.sleep(1)
    seen = counters_on(lab, "b", name)
    assert 1 in seen[1:] or seen.count(1) == 2, "a cold move starts the process afresh"


@pytest.mark.faults
def test_failed_cutover_resumes_on_the_source(lab: Lab, app: tuple[str, str]) -> None:
    name, guid = app
    # Occupy pulse's host port on host-b: the restored container cannot publish it.
    squatter = subprocess.Popen(
        [*lab.host("b").nsenter(), "busybox", "nc", "-l", "-p", str(pulse.PORT)],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        before = counters_on(lab, "a", name)[-1]
        state = migrate(lab, name, guid)
    finally:
        squatter.kill()
        squatter.wait()
    assert state.result == "RolledBack" and state.phase == Phase.ROLLED_BACK
    assert state.reason and state.reason.startswith("Verifying")
    time.sleep(1)
    seen = counters_on(lab, "a", name)
    assert seen[-1] > before and seen == list(range(1, seen[-1] + 1)), "the app lost its memory"
    with lab.agent("a") as a:
        status = a.status(name)
        assert status.containers[0].state == "running" and not status.quiesced
    with lab.agent("b") as b:
        assert not b.status(name).mounted
    with socket.create_connection((lab.host("a").address, pulse.PORT), timeout=3) as conn:
        assert conn.recv(20).startswith(b"pulse")


@pytest.mark.faults
def test_failure_before_the_freeze_leaves_the_source_untouched(
    lab: Lab, app: tuple[str, str]
) -> None:
    name, guid = app
    state = MigrationState(
        id=f"m-{uuid.uuid4().hex[:8]}", repository=name, guid=guid, source="host-a", target="host-a"
    )
    state = MigrationDriver(LabAgents(lab), lab.pki.client, Unrecorded()).run(state)
    assert state.result == "Failed" and "both host-a" in (state.reason or "")
    with lab.agent("a") as a:
        assert a.status(name).containers[0].state == "running"


@pytest.mark.faults
def test_a_move_failing_after_a_bulk_round_leaves_the_received_copy_stale(
    lab: Lab, app: tuple[str, str]
) -> None:
    """A bulk round installs a whole image on the target. If a later round fails (here the
    target's agent is down, so nobody can tidy up), that copy must not count as live, or
    the placement would see the repository on two machines (SplitBrain) and stall."""
    name, _ = app
    state = MigrationState(
        id=f"m-{uuid.uuid4().hex[:8]}", repository=name, guid="", source="host-a", target="host-b"
    )
    driver = MigrationDriver(LabAgents(lab), lab.pki.client, Unrecorded())
    while not state.bulk_rounds:  # Preparing, then the first bulk round
        state = driver.advance(state)
    with lab.agent("b") as b:
        received = next(r for r in b.repositories() if r.name == name)
    assert received.moved_to == "host-a", "a received copy counted as live before it ran"
    with lab.agent("b") as b, pytest.raises(AgentRefused, match="stale"):
        b.up(name)  # nobody starts it by mistake; the migration starts it with force

    state.phase = Phase.BULK_SYNC  # one more round, whatever the rounds rule said
    lab.stop_agent(lab.host("b"))
    try:
        state = driver.advance(state)  # the sender retries, then gives up
    finally:
        lab.start_agent(lab.host("b"))
    assert state.result == "Failed" and state.reason and state.reason.startswith("BulkSync")
    with lab.agent("a") as a:
        assert a.status(name).containers[0].state == "running"
    with lab.agent("b") as b:
        copy = next(r for r in b.repositories() if r.name == name)
    assert copy.moved_to == "host-a" and not copy.mounted, copy
    # The failed round's snapshot on the source went with the migration.
    transfers = lab.host("a").plan.datastore_mount / "transfers"
    assert not list(transfers.glob(f"{state.id}-*")), list(transfers.iterdir())
