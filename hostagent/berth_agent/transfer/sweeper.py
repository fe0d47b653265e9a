"""Removing transfers nobody will finish.

A transfer's directory holds, on the target, a partial image being received and, on the
source, a reflink snapshot being sent: each may be as large as the image. A transfer that
ends frees them (commit, abort, or the sender's abandon). One whose ending never arrived
(the target was unreachable when the sender gave up, the operator restarted the
migration under a new id, a host crashed) would keep them for ever, so the agent removes
a transfer that nobody has touched for a long while and that no request is using.

Removing one is always safe: a push that comes back for it later begins it again, as a
delta from the base where one is kept. The idle limit is long only so that a migration
retried after an outage can still resume where it stopped.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("berth.agent.transfer.sweeper")


class InUse:
    """Transfer ids that a request is working on (receiving, committing, pushing), and
    the ones being swept: a request for one of those waits until it is gone, then finds
    nothing and begins again."""

    def __init__(self) -> None:
        self._count: Counter[str] = Counter()
        self._sweeping: set[str] = set()
        self._changed = threading.Condition()

    def acquire(self, tid: str) -> None:
        with self._changed:
            self._changed.wait_for(lambda: tid not in self._sweeping)
            self._count[tid] += 1

    def release(self, tid: str) -> None:
        with self._changed:
            self._count[tid] -= 1
            if self._count[tid] <= 0:
                del self._count[tid]
            self._changed.notify_all()

    @contextmanager
    def hold(self, tid: str) -> Iterator[None]:
        self.acquire(tid)
        try:
            yield
        finally:
            self.release(tid)

    @contextmanager
    def claim_unused(self, tid: str) -> Iterator[bool]:
        """Yields True, keeping requests for tid out until the block ends, if none uses
        it now; else yields False."""
        with self._changed:
            free = self._count[tid] == 0
            if free:
                self._sweeping.add(tid)
        try:
            yield free
        finally:
            if free:
                with self._changed:
                    self._sweeping.discard(tid)
                    self._changed.notify_all()

    def ids(self) -> frozenset[str]:
        with self._changed:
            return frozenset(self._count)  # release() drops an id whose count reaches 0


def idle_transfers(
    last_activity: Mapping[str, float], now: float, max_idle: float, in_use: Collection[str]
) -> list[str]:
    """The transfers untouched for longer than max_idle and not in use, oldest first."""
    idle = [
        tid for tid, seen in last_activity.items() if tid not in in_use and now - seen > max_idle
    ]
    return sorted(idle, key=lambda tid: last_activity[tid])


def last_activity(directory: Path) -> float:
    """When a transfer's directory or any file in it last changed (wall-clock seconds)."""
    newest = directory.stat().st_mtime
    for entry in os.scandir(directory):
        try:
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
        except FileNotFoundError:
            continue  # removed meanwhile
    return newest


class Sweeper:
    def __init__(self, transfers_dir: Path, max_idle: float, in_use: InUse) -> None:
        self.dir = transfers_dir
        self.max_idle = max_idle
        self.in_use = in_use
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep_once(self, now: float | None = None) -> list[str]:
        """Remove the idle transfers; returns their ids."""
        if not self.dir.is_dir():
            return []
        seen: dict[str, float] = {}
        for entry in self.dir.iterdir():
            try:
                if entry.is_dir():
                    seen[entry.name] = last_activity(entry)
            except FileNotFoundError:
                continue
        now = time.time() if now is None else now
        removed = []
        for tid in idle_transfers(seen, now, self.max_idle, self.in_use.ids()):
            with self.in_use.claim_unused(tid) as free:
                # Looked at again once claimed: a request may have used it since the scan.
                try:
                    if not free or now - last_activity(self.dir / tid) <= self.max_idle:
                        continue
                except FileNotFoundError:
                    continue  # ended meanwhile
                shutil.rmtree(self.dir / tid, ignore_errors=True)
            removed.append(tid)
            log.info(
                "idle transfer removed",
                extra={"transfer": tid, "idle_seconds": round(now - seen[tid])},
            )
        return removed

    def start(self, every: float) -> None:
        """Sweep now (what a crash left) and then every `every` seconds, in a thread."""

        def loop() -> None:
            while True:
                try:
                    self.sweep_once()
                except OSError as err:  # a bad disk must not end the agent
                    log.warning("transfer sweep failed", extra={"error": str(err)})
                if self._stop.wait(every):
                    return

        self._thread = threading.Thread(target=loop, name="transfer-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
