"""The agent's HTTP routes. Handlers are thin: they call Repositories and map errors."""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from cryptography import x509
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest

from berth_agent import __version__
from berth_agent.config import AgentConfig
from berth_agent.errors import InvalidRequest, Refusal
from berth_agent.repositories import Repositories
from berth_agent.server.gate import SessionGate
from berth_agent.server.metrics import (
    OPERATION_SECONDS,
    OPERATIONS,
    REGISTRY,
    REPOSITORIES,
    start_at_zero,
)
from berth_agent.server.sessions import build_sessions_router
from berth_agent.server.transfers import build_router
from berth_agent.transfer.sweeper import InUse, Sweeper
from berth_common.agent_api.etag import entity_tag
from berth_common.agent_api.models import (
    MIGRATION_ID,
    CreateRequest,
    Datastore,
    DownRequest,
    Durations,
    FreezeRecord,
    FreezeRequest,
    Health,
    Heartbeat,
    LogLines,
    PostCopyReport,
    Problem,
    RepositoryRecord,
    RepositoryStatus,
    ResumeRequest,
    UpAnswer,
    UpRequest,
)

T = TypeVar("T")
log = logging.getLogger("berth.agent.api")


def _key(encoded: str | None) -> bytes | None:
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise InvalidRequest("key is not valid base64") from None


def describe_invalid(errors: Sequence[Any]) -> str:
    """Where each problem is and what it is, never the input: a request body can carry a
    LUKS key or a transfer token, and this message ends up in logs and statuses."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _measured(operation: str, call: Callable[[], T]) -> T:
    started = time.monotonic()
    try:
        result = call()
    except Exception:
        OPERATIONS.labels(operation, "error").inc()
        raise
    OPERATIONS.labels(operation, "ok").inc()
    OPERATION_SECONDS.labels(operation).observe(time.monotonic() - started)
    return result


def build_app(
    repos: Repositories, config: AgentConfig, certificates_required: bool = False
) -> FastAPI:
    """certificates_required: as served (serve.py), every request names its client
    certificate; without (tests of the app alone), one that names none may call every
    route but the session routes."""
    machine = config.name
    start_at_zero()
    in_use = InUse()
    sweeper = Sweeper(config.data_dir / "transfers", config.transfer_idle_expiry, in_use)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Often enough that a datastore is not held long past the limit.
        sweeper.start(every=min(config.transfer_idle_expiry / 4, 600))
        yield
        sweeper.stop()

    app = FastAPI(
        title="berth-agent",
        version=__version__,
        description="Runs repositories on this host and moves their images.",
        lifespan=lifespan,
    )

    def problem(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse(Problem(code=code, message=message).model_dump(), status_code=status)

    @app.exception_handler(Refusal)
    async def agent_error(_: Request, err: Refusal) -> JSONResponse:
        return problem(err.status, err.code, err.message)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, err: Exception) -> JSONResponse:
        log.exception("request failed", extra={"error": str(err)})
        return problem(500, "Internal", f"{type(err).__name__}: {err}")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return problem(400, "Invalid", describe_invalid(err.errors()))

    def health() -> Health:
        usage = shutil.disk_usage(config.data_dir)
        return Health(
            status="ok",
            machine=machine,
            version=__version__,
            datastore=Datastore(size_bytes=usage.total, free_bytes=usage.free),
        )

    @app.get("/healthz")
    def healthz() -> Health:
        return health()

    @app.get("/v1/heartbeat", response_model=Heartbeat)
    def heartbeat(request: Request) -> Response:
        body = Heartbeat(health=health(), repositories=repos.list()).model_dump_json(by_alias=True)
        etag = entity_tag(body.encode())
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body, media_type="application/json", headers={"ETag": etag})

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> bytes:
        records = repos.store.list()
        mounted = sum(repos.store.is_mounted(r.guid) for r in records)
        REPOSITORIES.labels("mounted").set(mounted)
        REPOSITORIES.labels("unmounted").set(len(records) - mounted)
        return generate_latest(REGISTRY)

    @app.get("/v1/repositories")
    def list_repositories() -> list[RepositoryStatus]:
        return repos.list()

    @app.post("/v1/repositories", status_code=201)
    def create(req: CreateRequest) -> RepositoryRecord:
        return _measured(
            "create",
            lambda: repos.create(
                req.name,
                req.size,
                template=req.template,
                services=req.services,
                address=req.address,
                guid=req.guid,
                key=_key(req.key),
            ),
        )

    @app.get("/v1/repositories/{ref}")
    def status(ref: str) -> RepositoryStatus:
        return repos.status(ref)

    @app.post("/v1/repositories/{ref}/up")
    def up(ref: str, req: UpRequest | None = None) -> UpAnswer:
        req = req or UpRequest()
        durations = _measured(
            "up",
            lambda: repos.up(ref, key=_key(req.key), wait_answer=req.wait_answer, force=req.force),
        )
        return UpAnswer(durations=durations, revival=repos.revival(ref))

    @app.post("/v1/repositories/{ref}/freeze")
    def freeze(ref: str, req: FreezeRequest) -> FreezeRecord:
        return _measured(
            "freeze",
            lambda: repos.freeze(
                ref,
                req.migration_id,
                checkpoint=req.checkpoint,
                memory=req.memory,
                page_server_address=req.page_server_address,
                stop_grace=req.stop_grace,
            ),
        )

    @app.get("/v1/repositories/{ref}/postcopy/{migration_id}")
    def postcopy(ref: str, migration_id: str) -> PostCopyReport:
        if not re.fullmatch(MIGRATION_ID, migration_id):
            raise InvalidRequest(f"not a migration id: {migration_id!r}")
        return PostCopyReport(containers=repos.postcopy(ref, migration_id))

    @app.post("/v1/repositories/{ref}/resume")
    def resume(ref: str, req: ResumeRequest) -> Durations:
        return Durations(durations=_measured("resume", lambda: repos.resume(ref, req.migration_id)))

    @app.get("/v1/repositories/{ref}/services/{service}/logs")
    def logs(ref: str, service: str, tail: int = 100) -> LogLines:
        if not 1 <= tail <= 10000:
            raise InvalidRequest("tail must be between 1 and 10000")
        return LogLines(lines=repos.logs(ref, service, tail))

    @app.post("/v1/repositories/{ref}/down")
    def down(ref: str, req: DownRequest | None = None) -> Durations:
        moved_to = req.moved_to if req else None
        return Durations(durations=_measured("down", lambda: repos.down(ref, moved_to=moved_to)))

    @app.delete("/v1/repositories/{ref}")
    def delete(ref: str, confirm: str = "") -> RepositoryRecord:
        return _measured("delete", lambda: repos.delete(ref, confirm))

    app.include_router(build_router(repos, config, in_use))
    app.include_router(build_sessions_router(repos))
    sessions_ca = (
        x509.load_pem_x509_certificate(config.tls.session_ca.read_bytes())
        if config.tls.session_ca is not None
        else None
    )
    app.add_middleware(
        SessionGate,
        machine=machine,
        sessions_ca=sessions_ca,
        certificates_required=certificates_required,
    )
    return app
