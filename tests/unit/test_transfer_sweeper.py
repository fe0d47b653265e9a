"""The transfer sweeper: idle transfers go, busy or recent ones stay (plain files in a
temporary directory; idleness is set with os.utime, and `now` is passed in)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from berth_agent.store.store import RepositoryStore
from berth_agent.transfer import frames
from berth_agent.transfer.hashtree import BLOCK_SIZE
from berth_agent.transfer.receiver import Receiver
from berth_agent.transfer.sweeper import InUse, Sweeper, idle_transfers
from berth_common import tokens
from berth_common.agent_api.models import BeginRequest, RepositoryRecord
from berth_common.pki import CertFiles, create_ca, issue

pytestmark = pytest.mark.unit
HOUR = 3600.0


def test_idle_transfers_are_the_old_unused_ones_oldest_first() -> None:
    now = 10_000.0
    seen = {"recent": now - 60, "old": 100.0, "older": 50.0, "busy": 10.0, "edge": now - HOUR}
    assert idle_transfers(seen, now, HOUR, {"busy"}) == ["older", "old"]  # edge: not yet
    assert idle_transfers(seen, now + 1, HOUR, set()) == ["busy", "older", "old", "edge"]
    assert idle_transfers({}, now, HOUR, set()) == []


def _transfer(root: Path, tid: str, age: float, now: float) -> Path:
    directory = root / tid
    directory.mkdir(parents=True)
    (directory / "staging.img").write_bytes(b"x")
    for path in (directory / "staging.img", directory):
        os.utime(path, (now - age, now - age))
    return directory


def test_sweep_removes_idle_transfers_and_keeps_recent_and_busy_ones(tmp_path: Path) -> None:
    now = time.time()
    in_use = InUse()
    old = _transfer(tmp_path, "old", 2 * HOUR, now)
    recent = _transfer(tmp_path, "recent", 60, now)
    busy = _transfer(tmp_path, "busy", 2 * HOUR, now)
    touched = _transfer(tmp_path, "touched", 2 * HOUR, now)
    os.utime(touched / "staging.img", (now, now))  # a file written lately counts
    with in_use.hold("busy"):
        removed = Sweeper(tmp_path, HOUR, in_use).sweep_once(now)
    assert removed == ["old"]
    assert not old.exists() and recent.exists() and busy.exists() and touched.exists()
    assert Sweeper(tmp_path, HOUR, in_use).sweep_once(now) == ["busy"]  # released now


def test_sweep_of_a_missing_directory_does_nothing(tmp_path: Path) -> None:
    assert Sweeper(tmp_path / "transfers", HOUR, InUse()).sweep_once() == []


def test_a_request_waits_while_its_transfer_is_swept() -> None:
    in_use = InUse()
    acquired = threading.Event()

    def request() -> None:
        in_use.acquire("t1")
        acquired.set()

    with in_use.claim_unused("t1") as free:
        assert free
        threading.Thread(target=request, daemon=True).start()
        assert not acquired.wait(0.2), "a request used a transfer being removed"
    assert acquired.wait(5)
    with in_use.claim_unused("t1") as free:
        assert not free, "a transfer in use was claimed for removal"
    in_use.release("t1")
    assert in_use.ids() == frozenset()


def test_an_open_receive_session_keeps_its_transfer(tmp_path: Path) -> None:
    ca = create_ca(CertFiles(tmp_path / "ca.crt", tmp_path / "ca.key"))
    operator = issue(ca, CertFiles(tmp_path / "op.crt", tmp_path / "op.key"), tokens.OPERATOR_CN)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    in_use = InUse()
    recv = Receiver(data_dir, RepositoryStore(data_dir), ca.cert, "host-b", in_use)
    guid, tid = str(uuid.uuid4()), "t-idle"
    record = RepositoryRecord(guid=guid, name="app", size_bytes=8 * BLOCK_SIZE, created_at="now")
    token = tokens.issue(tid, guid, "host-a", "host-b", operator)
    recv.begin(BeginRequest(transfer_id=tid, token=token, record=record))
    sweeper = Sweeper(data_dir / "transfers", HOUR, in_use)
    later = time.time() + 2 * HOUR

    session = recv.open_session(tid, token, 0)
    assert sweeper.sweep_once(later) == [], "a transfer was removed while receiving"
    frame, _ = frames.encode(0, b"\x01" * BLOCK_SIZE, BLOCK_SIZE)
    session.feed(frame)
    assert session.close().next_block == 1
    assert in_use.ids() == frozenset()
    assert sweeper.sweep_once(later) == [tid]
    assert not (data_dir / "transfers" / tid).exists()
