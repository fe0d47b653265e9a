"""A work queue of keys, with controller-runtime's guarantees.

- A key is queued at most once, however often it is added.
- A key is handed to one worker at a time: added while a worker holds it, it is queued
  again when that worker is done (so the newest change is always seen, never twice at
  once).
- `add_after` queues a key later (the earliest wins); `add_rate_limited` later still
  each time in a row that the key failed, until `forget`.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

BACKOFF_FIRST = 0.5  # seconds after the first failure in a row
BACKOFF_MAX = 300.0  # no key waits longer than this for its next try


def backoff_seconds(
    failures: int, first: float = BACKOFF_FIRST, most: float = BACKOFF_MAX
) -> float:
    """Exponential: first, 2 x first, 4 x first ... capped at most."""
    return float(min(most, first * 2.0 ** max(0, failures - 1)))


class WorkQueue(Generic[K]):
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, backoff_max: float = BACKOFF_MAX
    ) -> None:
        self._clock, self._backoff_max = clock, backoff_max
        self._ready: deque[K] = deque()
        self._queued: set[K] = set()  # in _ready
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing: queued again when done
        self._later: list[tuple[float, int, K]] = []  # heap of (due, sequence, key)
        self._due: dict[K, float] = {}  # each delayed key's earliest due time
        self._sequence = itertools.count()
        self._failures: dict[K, int] = {}
        self._shut = False
        self._changed = threading.Condition()

    # --- adding ------------------------------------------------------------------------
    def add(self, key: K) -> None:
        with self._changed:
            self._add(key)

    def _add(self, key: K) -> None:
        if self._shut or key in self._queued:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        self._queued.add(key)
        self._ready.append(key)
        self._changed.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._changed:
            due = self._clock() + delay
            if self._due.get(key, float("inf")) <= due:
                return  # already due sooner
            self._due[key] = due
            heapq.heappush(self._later, (due, next(self._sequence), key))
            self._changed.notify()

    def add_rate_limited(self, key: K) -> float:
        """Queue the key after its back-off; returns that back-off."""
        with self._changed:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
        delay = backoff_seconds(failures, most=self._backoff_max)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the back-off again."""
        with self._changed:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._changed:
            return self._failures.get(key, 0)

    # --- taking --------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> K | None:
        """The next key, marked as being processed until `done`; None once shut down (or
        after timeout)."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._changed:
            while True:
                if self._shut:
                    return None
                self._promote_due()
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                waits = [d - self._clock() for d in (deadline,) if d is not None]
                if self._later:
                    waits.append(self._later[0][0] - self._clock())
                if deadline is not None and self._clock() >= deadline:
                    return None
                self._changed.wait(max(0.0, min(waits)) if waits else None)

    def _promote_due(self) -> None:
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            due, _, key = heapq.heappop(self._later)
            if self._due.get(key) != due:
                continue  # superseded by an earlier add_after
            del self._due[key]
            self._add(key)

    def done(self, key: K) -> None:
        with self._changed:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add(key)

    # --- the rest --------------------------------------------------------------------------
    def idle(self) -> bool:
        """Nothing to hand out now and nothing being processed (keys due later may wait)."""
        with self._changed:
            return not self._ready and not self._processing

    def shutdown(self) -> None:
        with self._changed:
            self._shut = True
            self._changed.notify_all()
