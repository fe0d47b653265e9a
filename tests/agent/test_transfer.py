"""The transfer engine on real lab hosts: btrfs datastores, FIEMAP, mTLS between agents."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from berth_common import tokens
from berth_common.agent_api.errors import AgentRefused
from berth_common.agent_api.models import PushResult
from berth_lab import Lab
from berth_lab.agents import agent_endpoint
from berth_lab.scratch import remove_everywhere
from faults.workload import fill_up

pytestmark = pytest.mark.transfer
MiB = 2**20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def push(lab: Lab, repo: str, guid: str, source: str, target: str, **options: Any) -> PushResult:
    """Drive a push as the operator does: a signed token, the source agent's API."""
    tid = f"t-{uuid.uuid4().hex[:12]}"
    src, dst = lab.host(source), lab.host(target)
    token = tokens.issue(tid, guid, src.name, dst.name, lab.pki.client)
    with lab.agent(source) as agent:
        events = list(agent.push(repo, agent_endpoint(dst), token, tid, **options))
    result = events[-1]
    assert isinstance(result, PushResult), result
    return result


def images(lab: Lab, guid: str, source: str, target: str) -> tuple[Path, Path]:
    """(the source's retained base, the target's installed image)."""
    src = lab.host(source).plan.datastore_mount
    dst = lab.host(target).plan.datastore_mount
    return src / "bases" / guid / "base.img", dst / "images" / f"{guid}.img"


def write(lab: Lab, host: str, guid: str, mib: int, seek_mib: int = 0) -> None:
    lab.host(host).run(
        [
            "sh",
            "-c",
            f"dd if=/dev/urandom of=/var/lib/berth/mounts/{guid}/data "
            f"bs=1M count={mib} seek={seek_mib} conv=notrunc status=none && sync",
        ]
    )


@pytest.fixture
def repo(lab: Lab) -> Any:
    name = f"x{uuid.uuid4().hex[:8]}"
    with lab.agent("a") as a:
        guid = a.create(name, "2G").guid
        a.up(name)
    yield name, guid
    remove_everywhere(lab, name)


def test_full_then_delta_then_delta_back(lab: Lab, repo: tuple[str, str]) -> None:
    name, guid = repo
    write(lab, "a", guid, 300)

    full = push(lab, name, guid, "a", "b")
    assert full.mode == "full"
    # Sparse-aware: a 2 GiB image holding 300 MiB sends about 300 MiB, not 2 GiB.
    assert 300 * MiB <= full.bytes_sent <= 1.05 * 300 * MiB, full.summary
    base_a, image_b = images(lab, guid, "a", "b")
    assert sha256(base_a) == sha256(image_b)

    write(lab, "a", guid, 50, seek_mib=100)
    delta = push(lab, name, guid, "a", "b")
    assert delta.mode == "delta" and delta.base_id == full.root[:16]
    assert delta.bytes_sent <= 1.05 * 50 * MiB, delta.summary
    assert "delta vs base" in delta.summary
    assert sha256(base_a) == sha256(image_b)

    # The other way: b runs it now, writes, and sends back only what changed.
    with lab.agent("a") as a:
        a.down(name)
    with lab.agent("b") as b:
        b.up(name, force=True)  # received: marked as host-a's until started, as a move does
    write(lab, "b", guid, 20, seek_mib=10)
    back = push(lab, name, guid, "b", "a")
    # Mounting and starting the repository's dockerd on b wrote a little metadata too.
    assert back.mode == "delta", back.summary
    assert back.bytes_sent <= 1.05 * 20 * MiB + 2 * MiB, back.summary
    base_b, image_a = images(lab, guid, "b", "a")
    assert sha256(base_b) == sha256(image_a)
    with lab.agent("b") as b:
        b.down(name)
    with lab.agent("a") as a:
        a.up(name, force=True)  # the received image mounts and its data is there
        assert a.status(name).mounted
    size = lab.host("a").run(["stat", "-c", "%s", f"/var/lib/berth/mounts/{guid}/data"])
    assert int(size.stdout) == 300 * MiB


@pytest.mark.faults
def test_dropped_connection_resumes_without_starting_over(lab: Lab, repo: tuple[str, str]) -> None:
    name, guid = repo
    write(lab, "a", guid, 120)
    result = push(lab, name, guid, "a", "b", faults={"drop_after_bytes": 60 * MiB})
    assert result.attempts >= 2
    # Resumed: what had arrived before the break was not sent again.
    assert result.bytes_sent < 1.3 * result.bytes_planned
    base_a, image_b = images(lab, guid, "a", "b")
    assert sha256(base_a) == sha256(image_b)


@pytest.mark.faults
def test_target_agent_killed_mid_transfer_resumes(lab: Lab, repo: tuple[str, str]) -> None:
    name, guid = repo
    write(lab, "a", guid, 150)
    host_b = lab.host("b")

    def kill_and_restart() -> None:
        time.sleep(2.5)  # ~75 MiB in at 30 MB/s
        lab.stop_agent(host_b)
        time.sleep(1)
        lab.start_agent(host_b)

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    try:
        result = push(lab, name, guid, "a", "b", bandwidth=30e6)
    finally:
        killer.join()
    assert result.attempts >= 2
    assert result.bytes_sent < 1.6 * result.bytes_planned, result
    base_a, image_b = images(lab, guid, "a", "b")
    assert sha256(base_a) == sha256(image_b)


@pytest.mark.faults
def test_corrupt_range_is_caught_and_resent(lab: Lab, repo: tuple[str, str]) -> None:
    name, guid = repo
    write(lab, "a", guid, 30)
    result = push(lab, name, guid, "a", "b", faults={"corrupt_frame": 10})
    assert result.attempts >= 2
    base_a, image_b = images(lab, guid, "a", "b")
    assert sha256(base_a) == sha256(image_b)
    log = (lab.host("a").plan.state_dir / "agent.log").read_text()
    assert "checksum mismatch" in log  # the sender's record of the receiver's refusal


@pytest.mark.faults
def test_a_target_that_fills_up_mid_transfer_says_so_and_keeps_nothing(
    lab: Lab, repo: tuple[str, str]
) -> None:
    name, guid = repo
    write(lab, "a", guid, 96)
    datastore = lab.host("b").plan.datastore_mount
    # Room for a third of the data: the transfer starts, then the disk fills.
    ballast = fill_up(datastore, leave=32 * MiB)
    try:
        with pytest.raises(AgentRefused) as refused:
            push(lab, name, guid, "a", "b")
        assert "host-b's datastore is full" in refused.value.message, refused.value.message
        assert not list((datastore / "transfers").glob("*")), "the partial image was kept"
        assert not list((lab.host("a").plan.datastore_mount / "transfers").glob("*"))
    finally:
        shutil.rmtree(ballast)
    result = push(lab, name, guid, "a", "b")  # with room again, the same push succeeds
    assert result.bytes_sent >= 96 * MiB


@pytest.mark.faults
def test_bad_token_and_mounted_target_are_refused(lab: Lab, repo: tuple[str, str]) -> None:
    name, guid = repo
    a_host, b_host = lab.host("a"), lab.host("b")
    with lab.agent("a") as a:
        # A token for another target, and one signed by the target itself, are refused.
        for signer, target in ((lab.pki.client, "host-a"), (lab.pki.host("host-b"), "host-b")):
            token = tokens.issue("t-bad", guid, "host-a", target, signer)
            with pytest.raises(AgentRefused) as err:
                list(a.push(name, agent_endpoint(b_host), token, "t-bad"))
            assert "token" in err.value.message
    with lab.agent("b") as b:
        assert name not in [r.name for r in b.repositories()]
    # A target where the repository is mounted never has its image replaced.
    push(lab, name, guid, "a", "b")
    with lab.agent("b") as b:
        b.up(name, force=True)
    try:
        with pytest.raises(AgentRefused) as err:
            push(lab, name, guid, "a", "b")
        assert "mounted" in err.value.message
    finally:
        with lab.agent("b") as b:
            b.down(name)
    del a_host


def test_admin_push_prints_what_moved(lab: Lab, repo: tuple[str, str]) -> None:
    name, guid = repo
    write(lab, "a", guid, 40)
    cli = [
        sys.executable,
        "-m",
        "berth_agent.cli",
        "repo",
        "push",
        name,
        "--to",
        lab.host("b").address,
        "--compress",
    ]
    out = lab.host("a").run(cli, timeout=300).stdout.decode()
    assert "transferred in" in out and "(full)" in out
    write(lab, "a", guid, 5, seek_mib=1)
    out = lab.host("a").run(cli, timeout=300).stdout.decode()
    assert "(delta vs base" in out and "image 2.1 GB" in out


def test_deleting_a_repository_removes_its_retained_base(lab: Lab, repo: tuple[str, str]) -> None:
    name, guid = repo
    push(lab, name, guid, "a", "b")
    bases = [lab.host(h).plan.datastore_mount / "bases" / guid for h in ("a", "b")]
    assert all(b.exists() for b in bases), "both ends keep a base after a push"
    for host in ("a", "b"):
        with lab.agent(host) as agent:
            agent.down(name)
            agent.delete(name, confirm=name)
    assert not any(b.exists() for b in bases), "a deleted repository's base was kept"


@pytest.mark.faults
def test_a_transfer_abandoned_while_its_target_was_down_is_swept_once_idle(
    lab: Lab, repo: tuple[str, str]
) -> None:
    """The sender gives up while the target is down, so neither end hears the abort: the
    source keeps its snapshot and the target its partial image. Agents remove such
    transfers once idle for transfer_idle_expiry (6 h; the files are aged here)."""
    name, guid = repo
    write(lab, "a", guid, 150)
    host_b = lab.host("b")
    tid = f"t-{uuid.uuid4().hex[:12]}"
    token = tokens.issue(tid, guid, "host-a", "host-b", lab.pki.client)
    killer = threading.Timer(2.5, lab.stop_agent, [host_b])  # ~75 MiB in at 30 MB/s
    killer.start()
    try:
        with lab.agent("a") as agent, pytest.raises(AgentRefused, match="after 8 attempts"):
            list(agent.push(name, agent_endpoint(host_b), token, tid, bandwidth=30e6))
    finally:
        killer.join()
        lab.start_agent(host_b)
    left = [lab.host(h).plan.datastore_mount / "transfers" / tid for h in ("a", "b")]
    assert all(d.exists() for d in left), "the abandoned transfer left nothing to sweep"

    seven_hours_ago = time.time() - 7 * 3600
    for directory in left:
        for path in [*directory.iterdir(), directory]:
            os.utime(path, (seven_hours_ago, seven_hours_ago))
    for host in ("a", "b"):  # an agent sweeps when it starts, then every 10 minutes
        lab.stop_agent(lab.host(host))
        lab.start_agent(lab.host(host))
    deadline = time.monotonic() + 15
    while any(d.exists() for d in left) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(d.exists() for d in left), [str(d) for d in left if d.exists()]
