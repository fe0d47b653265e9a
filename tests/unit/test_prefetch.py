"""The sender's read-ahead: order kept, errors delivered, an abandoned producer stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from berth_agent.transfer.prefetch import prefetched

pytestmark = pytest.mark.unit


def test_items_arrive_in_order_and_the_producer_runs_ahead() -> None:
    made: list[int] = []

    def produce() -> Iterator[int]:
        for i in range(50):
            made.append(i)
            yield i

    stream = prefetched(produce(), depth=4)
    assert next(stream) == 0
    time.sleep(0.2)
    assert 3 <= len(made) <= 6  # ahead by the queue's depth (and one in hand), no more
    assert [0, *stream] == list(range(50))


def test_an_error_in_the_producer_is_raised_to_the_consumer_after_what_came_before() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ConnectionError("dropped")

    got = []
    with pytest.raises(ConnectionError, match="dropped"):
        for item in prefetched(produce(), depth=8):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_leaves_stops_the_producer_and_closes_it() -> None:
    closed = threading.Event()

    def produce() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    stream = prefetched(produce(), depth=2)
    assert next(stream) == 0
    stream.close()
    assert closed.wait(2), "the producer was left running"


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError):
        next(prefetched(iter([1]), depth=0))
