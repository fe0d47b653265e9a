"""The cyclic collector kept out of the way (controller/heap.py): what survives a quiet
moment is frozen, and only while the queue is idle."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from berth_operator.controller import heap

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_what_survives_while_idle_is_frozen_and_nothing_while_busy() -> None:
    kept = [{"n": i} for i in range(1000)]  # long-lived, as the caches are
    idle = threading.Event()
    keeper = heap.HeapKeeper(idle.is_set, every=0.01, grown=1)
    keeper.start()
    try:
        threading.Event().wait(0.1)
        assert gc.get_freeze_count() == 0, "frozen while the queue was busy"
        idle.set()
        for _ in range(200):
            if gc.get_freeze_count() >= len(kept):
                break
            threading.Event().wait(0.01)
        assert gc.get_freeze_count() >= len(kept)
    finally:
        keeper.stop()
