"""Session routes: a person's logs of, and docker commands on, one repository.

Only a session certificate granting that verb on that repository on this machine
reaches them (gate.py decides, before any route runs). Every session is logged for
audit when it starts and when it ends; a refused one with the reason.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from berth_agent.errors import Forbidden, Refusal
from berth_agent.repositories import Repositories
from berth_agent.runtime.session_exec import docker_arguments, docker_cli, run_docker
from berth_agent.runtime.session_logs import ContainerLogs
from berth_agent.server.gate import GRANT_STATE, audit, grant_fields
from berth_common.agent_api.models import SESSION_LOG_TAIL_MAX, ExecExit, ExecRequest
from berth_common.sessions import SessionGrant

# Docker's own rule for container names (an ID fits it too).
CONTAINER_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body once sent or abandoned: a client that went away while the body
    waited to be sent ends the session now, not when the body is garbage collected.
    closing: called then too (a body never begun has no finally of its own to run)."""

    def __init__(
        self,
        content: AsyncIterator[Any],
        media_type: str,
        closing: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type)
        self._closing = closing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()
            if self._closing is not None:
                self._closing()


def _grant(request: Request) -> SessionGrant:
    grant = getattr(request.state, GRANT_STATE, None)
    if not isinstance(grant, SessionGrant):  # the gate always sets it; never trust its absence
        raise Forbidden("session routes need a session certificate from `kubectl berth`")
    return grant


@contextlib.contextmanager
def _refusals_audited(fields: dict[str, object]) -> Iterator[None]:
    try:
        yield
    except Refusal as err:
        audit.warning("session refused", extra={**fields, "reason": err.message})
        raise


def build_sessions_router(repos: Repositories) -> APIRouter:
    router = APIRouter(tags=["sessions"])

    @router.get(
        "/v1/sessions/{repository}/logs",
        responses={200: {"content": {"text/plain": {}}, "description": "log lines"}},
    )
    async def logs(
        repository: str,
        request: Request,
        container: str | None = Query(None, pattern=CONTAINER_NAME),
        tail: int = Query(100, ge=1, le=SESSION_LOG_TAIL_MAX),
        follow: bool = False,
    ) -> Response:
        """The repository's container's log lines (every container's, each line prefixed
        with `[name] `, without `container`), each with Docker's timestamp. With follow,
        new lines as they come, until the repository's dockerd stops here."""
        grant = _grant(request)
        fields = {**grant_fields(grant), "container": container, "tail": tail, "follow": follow}
        with _refusals_audited(fields):
            source = await run_in_threadpool(
                lambda: ContainerLogs.open(
                    repos.running_daemon(repository), container, tail, follow
                )
            )
        audit.info("session started", extra=fields)
        started = time.monotonic()

        async def body() -> AsyncIterator[bytes]:
            lines = 0
            end = "the client went away"
            try:
                async with contextlib.aclosing(source.chunks()) as chunks:
                    async for chunk in chunks:
                        lines += chunk.count(b"\n")
                        yield chunk
                end = source.end
            finally:
                source.close()
                audit.info(
                    "session ended",
                    extra={**fields, "lines": lines, "end": end, "seconds": _since(started)},
                )

        return ClosingStreamingResponse(
            body(), media_type="text/plain; charset=utf-8", closing=source.close
        )

    @router.post(
        "/v1/sessions/{repository}/exec",
        responses={200: {"content": {"application/x-ndjson": {}}, "description": "frames"}},
    )
    async def exec_(repository: str, req: ExecRequest, request: Request) -> Response:
        """`docker ARGV[1:]` against the repository's own dockerd, non-interactive (no
        standard input, no TTY). Answers NDJSON: {"stream", "data"} frames as the command
        writes, then {"exit": code}."""
        grant = _grant(request)
        fields = {**grant_fields(grant), "argv": req.argv}
        with _refusals_audited(fields):
            args = docker_arguments(req.argv)
            docker = docker_cli()
            daemon = await run_in_threadpool(repos.running_daemon, repository)
        audit.info("session started", extra=fields)
        started = time.monotonic()

        async def body() -> AsyncIterator[str]:
            code: int | None = None
            try:
                async with contextlib.aclosing(
                    run_docker(docker, daemon.paths.socket, args)
                ) as frames:
                    async for frame in frames:
                        if isinstance(frame, ExecExit):
                            code = frame.exit
                        yield frame.model_dump_json(exclude_none=True) + "\n"
            except OSError as err:  # docker could not be started
                code = 127
                failed = ExecExit(exit=code, message=f"docker did not start: {err}")
                yield failed.model_dump_json() + "\n"
            finally:
                audit.info(
                    "session ended",
                    extra={
                        **fields,
                        "exit": code,
                        "end": "exited" if code is not None else "the client went away",
                        "seconds": _since(started),
                    },
                )

        # The command starts with the body: a body never begun started nothing.
        return ClosingStreamingResponse(body(), media_type="application/x-ndjson")

    return router


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
