"""Run a producer ahead of its consumer in a thread, with a bounded queue between them.

The sender reads, hashes and frames blocks, then TLS-encrypts and sends them; one thread
doing both leaves the link idle while it hashes. Reads, blake2b and TLS writes release
the GIL, so a producer thread keeps a shaped 1 Gbit/s link busy on two cores.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

T = TypeVar("T")
_POLL = 0.1  # seconds: how soon a blocked producer notices that the consumer left


class _End:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def prefetched(items: Iterator[T], depth: int) -> Generator[T, None, None]:
    """Yield what items yields, in order, with up to `depth` items made in advance. An
    exception in the producer is raised here; closing this generator stops the producer."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    ahead: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: T | _End) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    break
            else:
                offer(_End())
        except BaseException as err:  # handed to the consumer, raised there
            offer(_End(err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ahead.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        worker.join()
