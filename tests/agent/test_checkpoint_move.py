"""The agent's central promise on two real lab hosts: the counter keeps counting."""

from __future__ import annotations

import socket
import time

import pytest

from berth_agent.apps.pulse import counters
from berth_common.agent_api.client import AgentClient
from berth_common.process import run
from berth_lab import Lab

pytestmark = pytest.mark.agent


def wait_for_counter(agent: AgentClient, repo: str, at_least: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = counters(agent.logs(repo, "pulse", tail=5))
        if seen and seen[-1] >= at_least:
            latest: int = seen[-1]
            return latest
        time.sleep(0.1)
    raise AssertionError(f"pulse in {repo} did not reach {at_least} within {timeout}s")


def copy_image(lab: Lab, guid: str, source: str, target: str) -> None:
    """A plain copy between datastores; the transfer engine does this properly."""
    src = lab.host(source).plan.datastore_mount / "images"
    dst = lab.host(target).plan.datastore_mount / "images"
    dst.mkdir(exist_ok=True)
    files = [str(src / f"{guid}{suffix}") for suffix in (".img", ".json")]
    run(["cp", "--sparse=always", *files, str(dst)])


def tcp_answer(address: str, port: int) -> bytes:
    with socket.create_connection((address, port), timeout=3) as conn:
        return conn.recv(100)


def assert_checkpoint_copy_removed(lab: Lab, host: str, guid: str, timeout: float = 10) -> None:
    """Docker's restore unpacks a copy of the checkpoint into its daemon's TMPDIR and never
    removes it; the agent gives each repository's daemon a TMPDIR of its own on the
    datastore and empties it once the restore has returned."""
    tmp_dir = lab.host(host).plan.datastore_mount / "tmp" / guid
    agent_log = lab.host(host).plan.state_dir / "agent.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        removed = "checkpoint copies removed" in agent_log.read_text(errors="replace")
        if removed and not list(tmp_dir.glob("ctrd-checkpoint*")):
            return
        time.sleep(0.1)
    raise AssertionError(
        f"checkpoint copy not removed on {host}: {sorted(tmp_dir.glob('*'))}; "
        f"removal logged: {removed}"
    )


def test_pulse_moves_to_another_host_and_keeps_counting(lab: Lab) -> None:
    a, b = lab.agent("a"), lab.agent("b")
    repo = a.create("move-me", "2G", template="pulse")
    guid = repo.guid
    try:
        a.up("move-me")
        before = wait_for_counter(a, "move-me", 3)
        assert tcp_answer(lab.host("a").address, 8080).startswith(b"pulse")

        frozen = a.freeze("move-me", "m-agent-1")
        assert frozen.checkpointed == ["pulse"]
        # A replay changes nothing: the same record, with only the dump's time (it froze
        # the filesystem anew in no time worth reporting).
        dumped = {"checkpoint:pulse": frozen.durations["checkpoint:pulse"]}
        assert a.freeze("move-me", "m-agent-1") == frozen.model_copy(update={"durations": dumped})
        frozen_at = counters(a.logs("move-me", "pulse", tail=3))[-1]
        assert frozen_at >= before
        a.down("move-me")
        assert a.status("move-me").mounted is False

        copy_image(lab, guid, "a", "b")
        revived = b.up("move-me", wait_answer=30)
        assert "restore:pulse" in revived.durations
        # The application's downtime on the agents' own clocks: the source's first stop
        # (the record came with the image) to the target's first answer.
        assert frozen.frozen_at is not None and revived.revival is not None
        assert revived.revival.migration_id == "m-agent-1"
        assert revived.revival.frozen_at == frozen.frozen_at
        answered_at = revived.revival.answered_at
        assert answered_at is not None and answered_at > frozen.frozen_at
        again = b.up("move-me", wait_answer=30)  # a replay (an operator restarted meanwhile)
        assert again.revival == revived.revival, "a replayed up moved the answer's instant"
        assert_checkpoint_copy_removed(lab, "b", guid)

        after = wait_for_counter(b, "move-me", frozen_at + 2)
        seen = counters(b.logs("move-me", "pulse", tail=1000))
        # One unbroken run: every beat is the previous one plus one, never back to 1.
        assert seen == list(range(seen[0], seen[-1] + 1)), seen
        assert seen[0] == 1 and after > frozen_at
        # The restored process still holds its listening TCP socket on host b.
        assert tcp_answer(lab.host("b").address, 8080).startswith(b"pulse")
        status = b.status("move-me")
        assert status.frozen_by is None
        assert [c.state for c in status.containers] == ["running"]
    finally:
        for agent in (a, b):
            try:
                agent.down("move-me")
                agent.delete("move-me", confirm="move-me")
            except Exception:
                pass
            agent.close()
