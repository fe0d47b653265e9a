"""Post-copy on real lab hosts: a container holding random bytes in RAM moves with its
memory following after the freeze (CRIU lazy pages through a TLS page server), and a
fetch that dies part way brings the application back on the source, memory intact."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth_agent.apps import memory
from berth_common.agent_api.errors import AgentUnreachable
from berth_common.agent_api.services import RepositoryServices
from berth_lab import Lab
from berth_lab.agents import LabAgents
from berth_lab.leftovers import checkpoint_copies
from berth_lab.plan import AGENT_PORT
from berth_lab.scratch import remove_everywhere
from berth_operator.migration.driver import MigrationDriver
from berth_operator.migration.listener import Unrecorded
from berth_operator.migration.state import MigrationState, Phase
from migration.helpers import migrate, slowed

pytestmark = pytest.mark.migration
MIB = 256  # resident, in chunks of 1 MiB


def memory_lines(lab: Lab, host: str, name: str) -> list[str]:
    with lab.agent(host) as agent:
        return agent.logs(name, memory.NAME, tail=5000)


def wait_for_checks(lab: Lab, host: str, name: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = memory.events(memory_lines(lab, host, name))
        if sum(e.startswith(("ok ", "CORRUPT ")) for e in seen) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} on {host}: fewer than {count} checks in {timeout:.0f}s")


@pytest.fixture
def app(lab: Lab) -> Iterator[tuple[str, str]]:
    name = f"pc{uuid.uuid4().hex[:8]}"
    services = RepositoryServices(services=[memory.service(MIB, every=0.5)])
    with lab.agent("a") as a:
        guid = a.create(name, "1G", services=services.model_dump()).guid
        a.up(name)
    wait_for_checks(lab, "a", name, 1)
    yield name, guid
    remove_everywhere(lab, name)


def test_memory_follows_after_the_freeze_and_arrives_intact(lab: Lab, app: tuple[str, str]) -> None:
    name, guid = app
    state = migrate(lab, name, guid, memory="postcopy")
    assert state.result == "Succeeded", state.reason
    assert state.postcopy == [memory.NAME]
    assert state.postcopy_seconds is not None and state.postcopy_seconds > 0
    assert "PostCopy" in state.phase_seconds
    # Every page of the 256 MiB (4 KiB each) was placed by the fetch, some on demand.
    assert state.postcopy_pages >= 256 * 256, state.postcopy_pages
    assert state.postcopy_faulted_pages <= state.postcopy_pages
    # Only the process state went inside the freeze: the 256 MiB stayed out of the delta.
    assert state.delta_bytes < 64 * 1024 * 1024, state.delta_bytes
    before = len(memory.events(memory_lines(lab, "b", name)))
    wait_for_checks(lab, "b", name, before + 2)
    lines = memory_lines(lab, "b", name)
    assert memory.problems(lines) == [], lines[-5:]
    with lab.agent("a") as a:
        source = a.status(name)
    assert not source.mounted and not source.docker.running
    assert checkpoint_copies(lab.plan.state_dir) == []
    containers = lab.host("b").plan.datastore_mount / "mounts" / guid / "docker" / "containers"
    assert list(containers.glob("*/checkpoints/*")) == [], "the checkpoint stayed after post-copy"
    leftover = lab.host("a").plan.state_dir
    assert not list(leftover.rglob(f"{guid}/postcopy")), "post-copy files left on the source"


def test_the_same_move_with_memory_inside_the_freeze(lab: Lab, app: tuple[str, str]) -> None:
    name, guid = app
    state = migrate(lab, name, guid)
    assert state.result == "Succeeded", state.reason
    assert state.postcopy == [] and state.postcopy_seconds is None
    assert state.delta_bytes > MIB * 1024 * 1024  # the memory went inside the freeze
    before = len(memory.events(memory_lines(lab, "b", name)))
    wait_for_checks(lab, "b", name, before + 2)
    assert memory.problems(memory_lines(lab, "b", name)) == []


def fetch_pids(lab: Lab, host: str, guid: str) -> list[int]:
    """The shells running the page fetches of a repository on a lab host."""
    root = lab.host(host).plan.state_dir
    return [int(p.read_text()) for p in root.rglob(f"{guid}/postcopy/*/*/pid")]


@pytest.mark.faults
def test_a_page_fetch_killed_part_way_brings_the_app_back_on_the_source(
    lab: Lab, app: tuple[str, str]
) -> None:
    """The source's link slowed to 40 Mbit/s, so the fetch of 256 MiB lasts a minute;
    it is killed a second after the target answered. The target kills what it restored, the
    source's dump fails and CRIU resumes the processes there: the same process, every
    page as it was."""
    name, guid = app
    killed: list[int] = []

    class KillFetch(Unrecorded):
        def answered(self, state: MigrationState) -> None:
            time.sleep(1)
            for shell in fetch_pids(lab, "b", guid):
                children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
                for criu in map(int, children):  # the fetch, not the shell recording it
                    os.kill(criu, signal.SIGKILL)
                    killed.append(criu)

    with slowed(lab, "a", "40mbit"):
        state = migrate(lab, name, guid, memory="postcopy", listener=KillFetch())
    assert killed, "no page fetch ran on the target"
    assert state.result == "RolledBack" and state.phase == Phase.ROLLED_BACK, state.reason
    assert state.reason and state.reason.startswith("PostCopy"), state.reason
    before = len(memory.events(memory_lines(lab, "a", name)))
    wait_for_checks(lab, "a", name, before + 2)
    lines = memory_lines(lab, "a", name)
    assert memory.problems(lines) == [], lines[-5:]
    with lab.agent("a") as a:
        status = a.status(name)
    assert status.containers[0].state == "running" and not status.quiesced
    with lab.agent("b") as b:
        assert not b.status(name).mounted


@pytest.mark.faults
def test_a_link_cut_silently_during_post_copy_brings_the_app_back_on_the_source(
    lab: Lab, app: tuple[str, str]
) -> None:
    """After the target answered, host-a drops everything it sends host-b but the agent's
    answers: the page fetch waits on a connection that says nothing. The operator gives
    post-copy up once it has received nothing for POSTCOPY_STALL seconds; the target's
    copy is taken down, the source's dump stopped and its processes thawed."""
    name, guid = app
    drop = ["iptables", "-I", "OUTPUT", "-d", lab.host("b").address, "-p", "tcp",
            "!", "--sport", str(AGENT_PORT), "-j", "DROP"]  # fmt: skip

    class CutLink(Unrecorded):
        def answered(self, state: MigrationState) -> None:
            subprocess.run([*lab.host("a").nsenter(), *drop], check=True)

    try:
        with slowed(lab, "a", "40mbit"):
            state = migrate(lab, name, guid, memory="postcopy", listener=CutLink())
    finally:
        subprocess.run([*lab.host("a").nsenter(), *[a if a != "-I" else "-D" for a in drop]],
                       check=False)  # fmt: skip
    assert state.result == "RolledBack", state.reason
    assert state.reason and "received nothing" in state.reason, state.reason
    before = len(memory.events(memory_lines(lab, "a", name)))
    wait_for_checks(lab, "a", name, before + 2)
    lines = memory_lines(lab, "a", name)
    assert memory.problems(lines) == [], lines[-5:]
    with lab.agent("b") as b:
        assert not b.status(name).mounted
    assert fetch_pids_alive(lab, "b") == [], "a page fetch outlived the rollback"


@pytest.mark.faults
def test_the_target_agent_killed_during_post_copy_does_not_stop_it(
    lab: Lab, app: tuple[str, str]
) -> None:
    """The fetch runs beside the agent, not in it: killed and restarted, the agent reads
    how the fetch ended from the files its shell wrote, and the move completes."""
    name, guid = app
    persisted: list[MigrationState] = []

    class KillAgent(Unrecorded):
        def phase_changed(self, state: MigrationState, before: Phase) -> None:
            if state.phase == Phase.POST_COPY:
                persisted.append(state.model_copy(deep=True))
                lab.stop_agent(lab.host("b"))

    with slowed(lab, "a", "200mbit"):
        with pytest.raises(AgentUnreachable):
            migrate(lab, name, guid, memory="postcopy", listener=KillAgent())
        time.sleep(2)
        lab.start_agent(lab.host("b"))
        driver = MigrationDriver(LabAgents(lab), lab.pki.client, Unrecorded(), answer_timeout=30)
        state = driver.run(persisted[-1])  # as a restarted operator goes on from status
    assert state.result == "Succeeded", state.reason
    before = len(memory.events(memory_lines(lab, "b", name)))
    wait_for_checks(lab, "b", name, before + 2)
    lines = memory_lines(lab, "b", name)
    assert memory.problems(lines) == [], lines[-5:]


def fetch_pids_alive(lab: Lab, host: str) -> list[int]:
    root = lab.host(host).plan.state_dir
    return [
        pid
        for p in root.rglob("postcopy/*/*/pid")
        if Path(f"/proc/{(pid := int(p.read_text()))}").exists()
    ]
