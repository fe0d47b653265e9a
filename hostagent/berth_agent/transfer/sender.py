"""The sending side of a transfer: snapshot, find what to send, stream it, commit.

A reflink snapshot of the image is taken first, so the app may keep writing while its
blocks are read. With a base that the receiver holds too, the changed blocks are found
from the extents of the snapshot and the base (FIEMAP): no image data is read to find
them. Without reflinks, a hash manifest over allocated blocks stands in.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from berth_agent.errors import InvalidRequest, Refusal
from berth_agent.store.store import RepositoryStore
from berth_agent.transfer import frames, layout
from berth_agent.transfer.bases import BaseStore
from berth_agent.transfer.hashtree import ZERO_HASH, BlockHashes, block_hash
from berth_agent.transfer.plan import (
    TransferPlan,
    plan_delta_from_blocks,
    plan_delta_from_extents,
    plan_full,
)
from berth_agent.transfer.prefetch import prefetched
from berth_agent.transfer.receiver import TRANSFER_ID
from berth_agent.transfer.sweeper import InUse
from berth_agent.transfer.throttle import Throttle
from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.errors import AgentRefused, AgentUnreachable
from berth_common.agent_api.models import PushProgress, PushResult, RepositoryRecord
from berth_common.crash import CrashPoints
from berth_common.units import human_bytes

log = logging.getLogger("berth.agent.transfer.sender")
MAX_ATTEMPTS = 8
# Receiver answers worth another attempt: out of step (409), corrupt data (422), a
# proxy or restarting peer (502, 503). Anything else (a bad token, no space) is final.
RETRIABLE = (409, 422, 502, 503)


class TransferFailed(Refusal):
    status = 502
    code = "TransferFailed"


@dataclass
class Faults:
    """Test-only fault injection, honoured only by agents started with it enabled."""

    corrupt_frame: int | None = None  # flip a byte in the Nth data frame sent, once
    drop_after_bytes: int | None = None  # break the connection after this many bytes, once


@dataclass
class Progress:
    transfer_id: str
    mode: str = "planning"
    bytes_total: int = 0
    bytes_done: int = 0  # planned block bytes processed
    bytes_sent: int = 0  # payload bytes handed to the wire (made ahead), all attempts
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0

    def snapshot(self) -> PushProgress:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return PushProgress(
            transfer_id=self.transfer_id,
            mode=self.mode,
            bytes_total=self.bytes_total,
            bytes_done=self.bytes_done,
            bytes_sent=self.bytes_sent,
            elapsed=elapsed,
            rate=self.bytes_sent / elapsed,
            attempts=self.attempts,
        )


def summary(
    mode: str, bytes_sent: int, durations: dict[str, float], base_id: str | None, image_size: int
) -> str:
    """A push's result in a line (PushResult.summary)."""
    size = human_bytes(bytes_sent)
    took = sum(durations.values())
    if mode == "full":
        return f"{size} transferred in {took:.2f}s (full)"
    return (
        f"{size} transferred in {took:.2f}s (delta vs base {base_id}, "
        f"image {human_bytes(image_size)})"
    )


PREFETCH_FRAMES = 16  # 1 MiB frames made ahead of the socket: 16 MiB at most


class Sender:
    def __init__(
        self,
        data_dir: Path,
        store: RepositoryStore,
        crash: CrashPoints | None = None,
        in_use: InUse | None = None,
    ) -> None:
        self.dir = data_dir / "transfers"
        self.store = store
        self.crash = crash or CrashPoints(None)  # test only: "push.sending"
        self.in_use = in_use or InUse()  # shared with the sweeper, which skips these
        self.bases = BaseStore(data_dir)
        self._locks: dict[str, tuple[threading.Lock, int]] = {}  # the lock, its users
        self._guard = threading.Lock()

    def push(
        self, ref: str, target: AgentClient, token: str, transfer_id: str, **options: Any
    ) -> PushResult:
        """One push per transfer id at a time: a caller that replays a push (an operator
        restarted mid-transfer) waits for the first to end, then continues from there."""
        if not TRANSFER_ID.match(transfer_id):  # it names a directory here and there
            raise InvalidRequest(f"transfer id {transfer_id!r} is invalid")
        with self._guard:
            lock, users = self._locks.get(transfer_id, (threading.Lock(), 0))
            self._locks[transfer_id] = (lock, users + 1)
        try:
            with lock, self.in_use.hold(transfer_id):
                try:
                    return self._push(ref, target, token, transfer_id, **options)
                except Exception:
                    # The snapshot may be as large as the image. It goes only with the
                    # target's partial copy: a replay resuming that copy must send from the
                    # same snapshot.
                    if _abandon(target, transfer_id):
                        shutil.rmtree(self.dir / transfer_id, ignore_errors=True)
                    raise
        finally:
            with self._guard:  # the last user forgets the lock: one per transfer ever made
                lock, users = self._locks[transfer_id]
                if users == 1:
                    del self._locks[transfer_id]
                else:
                    self._locks[transfer_id] = (lock, users - 1)

    def _push(
        self,
        ref: str,
        target: AgentClient,
        token: str,
        transfer_id: str,
        *,
        compress: bool = False,
        bandwidth: float | None = None,
        faults: Faults | None = None,
        on_progress: Callable[[PushProgress], None] | None = None,
    ) -> PushResult:
        record = self.store.find(ref)
        progress = Progress(transfer_id)
        durations: dict[str, float] = {}
        t = time.monotonic()
        work = self.dir / transfer_id
        work.mkdir(parents=True, exist_ok=True)
        source, snap_is_copy = self._snapshot(record, work)
        durations["snapshot"] = time.monotonic() - t

        base = self.bases.info(record.guid)
        begin = target.begin_transfer(transfer_id, token, record, base.root if base else None)
        t = time.monotonic()
        base_hashes = (
            self.bases.hashes(record.guid, base) if base and begin.mode == "delta" else None
        )
        plan = self._plan(record, source, base_hashes, begin.mode)
        durations["find"] = time.monotonic() - t
        progress.mode, progress.bytes_total = plan.mode, plan.bytes_planned
        hashes = base_hashes.copy() if base_hashes else BlockHashes.of_zeros(record.size_bytes)

        t = time.monotonic()
        self._send(
            target,
            token,
            plan,
            source,
            hashes,
            progress,
            compress,
            bandwidth,
            faults or Faults(),
            on_progress,
        )
        durations["send"] = time.monotonic() - t
        t = time.monotonic()
        root = hashes.root()
        try:
            target.commit_transfer(transfer_id, token, root)
        except AgentRefused as err:
            _abandon(target, transfer_id)
            raise TransferFailed(f"target refused the image: {err.message}") from err
        self.bases.replace(record.guid, source if snap_is_copy else None, hashes)
        shutil.rmtree(work, ignore_errors=True)
        durations["commit"] = time.monotonic() - t
        base_id = base.id if plan.mode == "delta" and base else None
        result = PushResult(
            summary=summary(plan.mode, progress.bytes_sent, durations, base_id, record.size_bytes),
            transfer_id=transfer_id,
            mode=plan.mode,
            image_size=record.size_bytes,
            bytes_planned=plan.bytes_planned,
            bytes_sent=progress.bytes_sent,
            base_id=base_id,
            root=root,
            attempts=progress.attempts,
            durations=durations,
        )
        log.info(
            "transfer pushed",
            extra={
                "transfer": transfer_id,
                "repository": record.name,
                "mode": plan.mode,
                "sent": progress.bytes_sent,
                "durations": durations,
            },
        )
        return result

    def _snapshot(self, record: RepositoryRecord, work: Path) -> tuple[Path, bool]:
        """A frozen view to read from: a reflink (kept across retries of the same
        transfer), or the image itself where reflinks are impossible (then it must not be
        mounted)."""
        snap = work / "snap.img"
        if snap.exists():
            return snap, True
        try:
            layout.reflink(self.store.image_path(record.guid), snap)
            return snap, True
        except layout.LayoutUnsupported:
            if self.store.is_mounted(record.guid):
                raise Refusal(
                    f"repository {record.name!r} is mounted and this datastore cannot make "
                    "reflink snapshots: take it down (or freeze it) before pushing"
                ) from None
            return self.store.image_path(record.guid), False

    def _plan(
        self, record: RepositoryRecord, source: Path, base_hashes: BlockHashes | None, mode: str
    ) -> TransferPlan:
        size = record.size_bytes
        block_size = (
            BlockHashes.of_zeros(size).block_size
            if base_hashes is None
            else (base_hashes.block_size)
        )
        fd = os.open(source, os.O_RDONLY)
        try:
            if mode != "delta" or base_hashes is None:
                return plan_full(size, layout.allocated_ranges(fd), block_size)
            base_image = self.bases.image(record.guid)
            if base_image.exists():
                with open(base_image, "rb") as base_file:
                    try:
                        return plan_delta_from_extents(
                            size, layout.fiemap(fd), layout.fiemap(base_file.fileno()), block_size
                        )
                    except layout.LayoutUnsupported:
                        pass
            return plan_delta_from_blocks(size, _changed_by_hashes(fd, base_hashes), block_size)
        finally:
            os.close(fd)

    def _send(
        self,
        target: AgentClient,
        token: str,
        plan: TransferPlan,
        source: Path,
        hashes: BlockHashes,
        progress: Progress,
        compress: bool,
        bandwidth: float | None,
        faults: Faults,
        on_progress: Callable[[PushProgress], None] | None,
    ) -> None:
        throttle = Throttle(bandwidth)
        fd = os.open(source, os.O_RDONLY)
        try:
            tid = progress.transfer_id
            while True:
                progress.attempts += 1
                try:
                    next_block = target.transfer_status(tid).next_block
                    stream = self._frames(
                        plan,
                        fd,
                        hashes,
                        next_block,
                        progress,
                        compress,
                        throttle,
                        faults,
                        on_progress,
                    )
                    ahead = prefetched(stream, PREFETCH_FRAMES)
                    try:
                        target.send_frames(tid, token, next_block, ahead)
                    finally:
                        ahead.close()
                    return
                except (AgentUnreachable, AgentRefused, _Dropped) as err:
                    retriable = not isinstance(err, AgentRefused) or err.status in RETRIABLE
                    if not retriable or progress.attempts >= MAX_ATTEMPTS:
                        _abandon(target, tid)
                        raise TransferFailed(
                            f"transfer {tid} failed after {progress.attempts} attempts: {err}"
                        ) from err
                    log.warning(
                        "transfer interrupted; resuming",
                        extra={"transfer": tid, "attempt": progress.attempts, "error": str(err)},
                    )
                    time.sleep(min(0.2 * 2**progress.attempts, 5))
        finally:
            os.close(fd)

    def _frames(
        self,
        plan: TransferPlan,
        fd: int,
        hashes: BlockHashes,
        next_block: int,
        progress: Progress,
        compress: bool,
        throttle: Throttle,
        faults: Faults,
        on_progress: Callable[[PushProgress], None] | None,
    ) -> Iterator[bytes]:
        bs = plan.block_size
        compressor = zstandard.ZstdCompressor(level=1) if compress else None
        progress.bytes_done = 0
        last_report = 0.0
        for first, count in plan.runs:
            data = os.pread(fd, count * bs, first * bs)
            if first < next_block:  # the receiver has it already: only the hashes are due
                _hash_into(hashes, first, data, bs)
                progress.bytes_done += count * bs
                continue
            if data.count(0) == len(data):
                for i in range(count):
                    hashes.set(first + i, ZERO_HASH)
                frame = frames.encode_zero(first, count) if plan.mode == "delta" else b""
            else:
                frame, digests = frames.encode(first, data, bs, compressor)
                for i in range(count):
                    hashes.set(first + i, digests[i * 16 : (i + 1) * 16])
                if faults.corrupt_frame is not None:
                    if faults.corrupt_frame == 0:
                        frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
                        faults.corrupt_frame = None
                    else:
                        faults.corrupt_frame -= 1
            progress.bytes_done += count * bs
            if frame:
                if faults.drop_after_bytes is not None and (
                    progress.bytes_sent + len(frame) > faults.drop_after_bytes
                ):
                    faults.drop_after_bytes = None
                    raise _Dropped("injected: connection dropped")
                wait = throttle.delay(len(frame), time.monotonic())
                if wait:
                    time.sleep(wait)
                progress.bytes_sent += len(frame)
                yield frame
                self.crash.reached("push.sending")
            now = time.monotonic()
            if on_progress and now - last_report > 0.2:
                last_report = now
                on_progress(progress.snapshot())
        if on_progress:
            on_progress(progress.snapshot())


def _abandon(target: AgentClient, tid: str) -> bool:
    """A transfer that failed for good frees what the target holds of it; False when the
    target could not be told (it keeps its copy until the transfer id is aborted)."""
    try:
        target.abort_transfer(tid)
        return True
    except (AgentUnreachable, AgentRefused) as err:
        log.warning("abandoned transfer not aborted", extra={"transfer": tid, "error": str(err)})
        return False


class _Dropped(ConnectionError):
    pass


def _hash_into(hashes: BlockHashes, first: int, data: bytes, bs: int) -> None:
    view = memoryview(data)
    for i in range(len(data) // bs):
        hashes.set(first + i, block_hash(view[i * bs : (i + 1) * bs]))


def _changed_by_hashes(fd: int, base: BlockHashes) -> list[int]:
    """Without reflinks: hash every allocated block and compare with the base's hashes."""
    bs = base.block_size
    allocated: set[int] = set()
    changed: list[int] = []
    for start, end in layout.allocated_ranges(fd):
        for block in range(start // bs, (end + bs - 1) // bs):
            allocated.add(block)
    for block in range(base.blocks):
        digest = block_hash(os.pread(fd, bs, block * bs)) if block in allocated else ZERO_HASH
        if digest != base.get(block):
            changed.append(block)
    return changed
