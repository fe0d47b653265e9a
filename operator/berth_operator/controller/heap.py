"""Python's cyclic garbage collector, kept out of the way of the work.

The caches hold every placement and Machine as parsed JSON: at 5,000 placements about
450,000 objects, which each full collection scans with every thread stopped (330-450 ms
measured, every few seconds while the operator starts or moves many repositories: the
tail of the moves' first-phase latency). What has been kept through a quiet moment is
long-lived, so it is frozen (`gc.freeze`: left out of every later scan), once the queue
is idle, after one collection has taken away whatever garbage it held. Plain JSON holds no
cycles: a frozen object that is replaced later is still freed by its reference count.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("berth.operator")

# Survivors of the last freeze worth another: fewer cost a full scan little anyway.
GROWN_OBJECTS = 20_000


def freeze() -> None:
    """Leave everything alive now out of later collections (no collection first: at
    start-up what is alive is what the caches were just filled with)."""
    gc.freeze()


class HeapKeeper:
    """Every `every` seconds: if the work queue is idle and enough has survived since the
    last freeze, collect once, then freeze what is left."""

    def __init__(
        self, idle: Callable[[], bool], every: float = 30.0, grown: int = GROWN_OBJECTS
    ) -> None:
        self._idle, self._every, self._grown = idle, every, grown
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heap", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            if self._idle() and len(gc.get_objects(generation=2)) >= self._grown:
                self.collect_and_freeze()

    @staticmethod
    def collect_and_freeze() -> None:
        started = time.monotonic()
        collected = gc.collect()
        gc.freeze()
        log.debug(
            "heap frozen",
            extra={
                "collected": collected,
                "frozen": gc.get_freeze_count(),
                "seconds": round(time.monotonic() - started, 3),
            },
        )
