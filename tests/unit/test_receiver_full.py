"""The receiver when its datastore fills up: a clear refusal, the data freed, and every
later look at the transfer says why (plain files in a temporary directory; the disk
filling up is a patched os.pwrite)."""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

import pytest

from berth_agent.errors import InsufficientSpace
from berth_agent.store.store import RepositoryStore
from berth_agent.transfer import frames
from berth_agent.transfer.hashtree import BLOCK_SIZE
from berth_agent.transfer.receiver import Receiver
from berth_common import tokens
from berth_common.agent_api.models import BeginRequest, RepositoryRecord
from berth_common.pki import CertFiles, create_ca, issue

pytestmark = pytest.mark.unit
SIZE = 64 * BLOCK_SIZE


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Receiver, BeginRequest]:
    ca = create_ca(CertFiles(tmp_path / "ca.crt", tmp_path / "ca.key"))
    operator = issue(ca, CertFiles(tmp_path / "op.crt", tmp_path / "op.key"), tokens.OPERATOR_CN)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    recv = Receiver(data_dir, RepositoryStore(data_dir), ca.cert, "host-b")
    guid, tid = str(uuid.uuid4()), "t-full"
    record = RepositoryRecord(guid=guid, name="app", size_bytes=SIZE, created_at="now")
    token = tokens.issue(tid, guid, "host-a", "host-b", operator)
    return recv, BeginRequest(transfer_id=tid, token=token, record=record)


def test_a_full_datastore_ends_the_transfer_frees_it_and_says_why(
    setup: tuple[Receiver, BeginRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    recv, begin = setup
    recv.begin(begin)
    frame, _ = frames.encode(0, b"\x01" * (4 * BLOCK_SIZE), BLOCK_SIZE)
    calls = {"n": 0}
    real_pwrite = os.pwrite

    def pwrite_that_fills_up(fd: int, data: bytes | memoryview, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_pwrite(fd, bytes(data[: len(data) // 2]), offset)  # a short write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", pwrite_that_fills_up)
    session = recv.open_session(begin.transfer_id, begin.token, 0)
    with pytest.raises(InsufficientSpace, match="host-b's datastore is full"):
        session.feed(frame)
    session.close()
    _, staging, hashes = recv._paths(begin.transfer_id)
    assert not staging.exists() and not hashes.exists(), "the partial image was kept"
    for look in (
        lambda: recv.status(begin.transfer_id),
        lambda: recv.begin(begin),
        lambda: recv.open_session(begin.transfer_id, begin.token, 0),
    ):
        with pytest.raises(InsufficientSpace, match="partial image was removed"):
            look()
    recv.abort(begin.transfer_id)
    assert not staging.parent.exists()
