"""A fixed number of threads reconciling keys from a work queue."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from berth_operator.controller.queue import WorkQueue

K = TypeVar("K", bound=Hashable)
log = logging.getLogger("berth.operator.controller")


@dataclass(frozen=True)
class Result:
    """What a reconcile asks of the queue: nothing (the next change brings the key back),
    or another look after `requeue_after` seconds (0: at once, after what is queued)."""

    requeue_after: float | None = None


DONE = Result()


class Workers(Generic[K]):
    def __init__(
        self,
        name: str,
        queue: WorkQueue[K],
        reconcile: Callable[[K], Result],
        count: int,
    ) -> None:
        self.name, self.queue, self._reconcile, self.count = name, queue, reconcile, count
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.count):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5) -> None:
        self.queue.shutdown()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                result = self._reconcile(key)
            except Exception:
                delay = self.queue.add_rate_limited(key)
                log.exception(
                    "reconcile failed", extra={"controller": self.name, "key": str(key),
                                               "retry_in_s": delay}
                )  # fmt: skip
            else:
                self.queue.forget(key)
                if result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            finally:
                self.queue.done(key)
