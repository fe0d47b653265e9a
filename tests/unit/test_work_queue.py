"""The placements' work queue (operator/berth_operator/controller/queue.py): each key
once, one worker per key, delays and back-off, on a clock the test turns."""

from __future__ import annotations

import threading

import pytest

from berth_operator.controller.queue import BACKOFF_MAX, WorkQueue, backoff_seconds
from berth_operator.controller.workers import Result, Workers

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(queue: WorkQueue[str]) -> list[str]:
    taken = []
    while (key := queue.get(timeout=0)) is not None:
        taken.append(key)
        queue.done(key)
    return taken


def test_a_key_added_many_times_is_queued_once_in_order() -> None:
    queue: WorkQueue[str] = WorkQueue(Clock())
    for key in ["a", "b", "a", "c", "b"]:
        queue.add(key)
    assert drain(queue) == ["a", "b", "c"]


def test_a_key_added_while_a_worker_holds_it_comes_back_once_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue(Clock())
    queue.add("a")
    held = queue.get(timeout=0)
    assert held == "a"
    queue.add("a")
    queue.add("a")
    assert queue.get(timeout=0) is None, "handed to a second worker while the first holds it"
    queue.done("a")
    assert drain(queue) == ["a"]


def test_add_after_waits_and_the_earliest_wins() -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock)
    queue.add_after("a", 10)
    queue.add_after("a", 5)
    queue.add_after("a", 60)
    assert queue.get(timeout=0) is None
    clock.now += 5
    assert drain(queue) == ["a"]
    clock.now += 100
    assert drain(queue) == [], "a superseded delay fired too"


def test_back_off_doubles_per_failure_until_forgotten() -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock)
    delays = [queue.add_rate_limited("a") for _ in range(3)]
    assert delays == [0.5, 1.0, 2.0]
    queue.forget("a")
    assert queue.add_rate_limited("a") == 0.5
    assert backoff_seconds(50) == BACKOFF_MAX


def test_shutdown_releases_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    waiter = threading.Thread(target=lambda: got.append(queue.get()))
    waiter.start()
    queue.shutdown()
    waiter.join(5)
    assert got == [None]


def test_workers_requeue_failures_with_back_off_and_honour_requeue_after() -> None:
    queue: WorkQueue[str] = WorkQueue()
    seen: list[str] = []
    done = threading.Event()

    def reconcile(key: str) -> Result:
        seen.append(key)
        if key == "fails" and seen.count("fails") == 1:
            raise RuntimeError("first try fails")
        if key == "again" and seen.count("again") == 1:
            return Result(requeue_after=0.05)
        if seen.count("fails") == 2 and seen.count("again") == 2:
            done.set()
        return Result()

    workers = Workers("test", queue, reconcile, count=2)
    workers.start()
    queue.add("fails")
    queue.add("again")
    try:
        assert done.wait(5), seen
    finally:
        workers.stop()
    assert sorted(seen) == ["again", "again", "fails", "fails"]
    assert queue.failures("fails") == 0  # forgotten after it succeeded


def test_the_back_off_is_capped_where_the_queue_says() -> None:
    queue: WorkQueue[str] = WorkQueue(Clock(), backoff_max=5)
    assert [queue.add_rate_limited("a") for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
