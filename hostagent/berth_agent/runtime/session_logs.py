"""A session's `logs`: the log lines of a repository's containers, from its own dockerd."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncGenerator, Iterator

import docker
import requests

from berth_agent.errors import NotFound
from berth_agent.runtime.dockerd import RepositoryDaemon

log = logging.getLogger("berth.agent.sessions")
_END = b""  # a reader's last item: its stream ended
_QUEUED_CHUNKS = 256  # per session: a client that reads slowly holds its readers back


class ContainerLogs:
    """Log streams of some containers of one dockerd, merged line by line, each line
    prefixed with its container's name when there are several.

    The docker SDK's streams block, so each is read by a thread of its own; the async
    side awaits their lines without a worker thread, so a follow left open for hours
    takes nothing from the thread pool the agent's other routes run in."""

    def __init__(
        self,
        daemon: RepositoryDaemon,
        client: docker.DockerClient,
        streams: list[tuple[bytes, Iterator[bytes]]],
    ) -> None:
        self._daemon = daemon
        self._client = client
        self._streams = streams
        self._queue: queue.Queue[bytes] = queue.Queue(_QUEUED_CHUNKS)
        self._closed = threading.Event()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.end = "the logs ended"  # why the stream ended, once it has

    @classmethod
    def open(
        cls, daemon: RepositoryDaemon, container: str | None, tail: int, follow: bool
    ) -> ContainerLogs:
        """container None: every container of the daemon. Blocks (call it in a thread);
        NotFound for a container the daemon does not have."""
        client = daemon.client(timeout=10)
        try:
            if container is not None:
                try:
                    containers = [client.containers.get(container)]
                except docker.errors.NotFound:
                    raise NotFound(f"the repository has no container {container!r}") from None
            else:
                containers = sorted(client.containers.list(all=True), key=lambda c: c.name)
            streams = [
                (
                    b"" if container is not None else f"[{c.name}] ".encode(),
                    c.logs(stream=True, follow=follow, tail=tail, timestamps=True),
                )
                for c in containers
            ]
        except BaseException:
            client.close()
            raise
        return cls(daemon, client, streams)

    async def chunks(self, check_every: float = 1.0) -> AsyncGenerator[bytes, None]:
        """Whole lines, as they come, until every stream ended, the daemon stopped (the
        repository went down or moved away) or the caller stops reading; closed then."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for prefix, stream in self._streams:
            threading.Thread(target=self._read, args=(prefix, stream), daemon=True).start()
        ended = 0
        try:
            while ended < len(self._streams):
                try:
                    await asyncio.wait_for(self._wake.wait(), check_every)
                except TimeoutError:
                    if not self._daemon.running():
                        self.end = "the repository's dockerd stopped"
                        return
                    continue
                self._wake.clear()
                batch = []
                with contextlib.suppress(queue.Empty):
                    while True:
                        item = self._queue.get_nowait()
                        if item == _END:
                            ended += 1
                        else:
                            batch.append(item)
                if batch:
                    yield b"".join(batch)
        finally:
            self.close()

    def _read(self, prefix: bytes, stream: Iterator[bytes]) -> None:
        pending = b""
        try:
            for chunk in stream:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if lines:
                    self._put(b"".join(prefix + line + b"\n" for line in lines))
            if pending:
                self._put(prefix + pending + b"\n")
        except (docker.errors.DockerException, requests.RequestException, OSError) as err:
            if not self._closed.is_set():
                log.warning("session log stream failed", extra={"error": str(err)})
        finally:
            self._put(_END)

    def _put(self, item: bytes) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                break
            except queue.Full:
                continue
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the agent stops
                self._loop.call_soon_threadsafe(self._wake.set)

    def close(self) -> None:
        """Stop every stream (their threads end) and let go of the daemon. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        for _, stream in self._streams:
            close = getattr(stream, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # already closed by the daemon
                    close()
        self._client.close()
