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

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from pydantic import BaseModel, Field

from berth_agent import __version__
from berth_agent.checkpoint.freeze import MAX_STOP_GRACE
from berth_agent.checkpoint.memory import MemoryMode
from berth_agent.config import AgentConfig
from berth_agent.errors import AgentError, InvalidRequest
from berth_agent.repositories import Repositories
from berth_agent.runtime.spec import RepositoryServices
from berth_agent.server.metrics import OPERATION_SECONDS, OPERATIONS, REGISTRY, REPOSITORIES
from berth_agent.server.transfers import build_router
from berth_agent.transfer.sweeper import InUse, Sweeper

T = TypeVar("T")
log = logging.getLogger("berth.agent.api")


class CreateRequest(BaseModel):
    name: str
    size: str = Field(examples=["2G"])
    guid: str | None = None
    template: str | None = Field(None, examples=["pulse"])
    services: RepositoryServices | None = None
    key: str | None = Field(None, description="base64 LUKS key; never stored or logged")


class UpRequest(BaseModel):
    key: str | None = Field(None, description="base64 LUKS key for encrypted repositories")
    wait_answer: float | None = Field(
        None, gt=0, le=600, description="also wait until the services' TCP ports answer"
    )
    force: bool = Field(False, description="start a copy marked stale by a migration")


class DownRequest(BaseModel):
    moved_to: str | None = Field(None, description="mark this copy stale: it moved there")


MIGRATION_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"


class FreezeRequest(BaseModel):
    migration_id: str = Field(pattern=MIGRATION_ID)
    checkpoint: bool = Field(True, description="False: stop every container (cold)")
    memory: MemoryMode = Field(
        MemoryMode.FREEZE, description="when checkpointed containers' memory moves"
    )
    page_server_address: str | None = Field(
        None,
        pattern=r"^[0-9.]+$|^[0-9a-fA-F:]+$",
        description="this host's IP address as the target reaches it (post-copy)",
    )
    stop_grace: int | None = Field(
        None,
        ge=0,
        le=MAX_STOP_GRACE,
        description="seconds a stopped container gets between its stop signal and SIGKILL "
        "(default: its own stop timeout, else docker's 10 s)",
    )


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


def build_app(repos: Repositories, config: AgentConfig) -> FastAPI:
    machine = config.name
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

    @app.exception_handler(AgentError)
    async def agent_error(_: Request, err: AgentError) -> JSONResponse:
        return JSONResponse({"code": err.code, "message": err.message}, status_code=err.status)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, err: Exception) -> JSONResponse:
        log.exception("request failed", extra={"error": str(err)})
        return JSONResponse(
            {"code": "Internal", "message": f"{type(err).__name__}: {err}"}, status_code=500
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"code": "Invalid", "message": describe_invalid(err.errors())}, status_code=400
        )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        usage = shutil.disk_usage(config.data_dir)
        return {
            "status": "ok",
            "machine": machine,
            "version": __version__,
            "datastore": {"sizeBytes": usage.total, "freeBytes": usage.free},
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> bytes:
        records = repos.store.list()
        mounted = sum(repos.store.is_mounted(r.guid) for r in records)
        REPOSITORIES.labels("mounted").set(mounted)
        REPOSITORIES.labels("unmounted").set(len(records) - mounted)
        return generate_latest(REGISTRY)

    @app.get("/v1/repositories")
    def list_repositories() -> list[dict[str, Any]]:
        return repos.list()

    @app.post("/v1/repositories", status_code=201)
    def create(req: CreateRequest) -> dict[str, Any]:
        record = _measured(
            "create",
            lambda: repos.create(
                req.name,
                req.size,
                template=req.template,
                services=req.services,
                guid=req.guid,
                key=_key(req.key),
            ),
        )
        return record.model_dump(mode="json")

    @app.get("/v1/repositories/{ref}")
    def status(ref: str) -> dict[str, Any]:
        return repos.status(ref)

    @app.post("/v1/repositories/{ref}/up")
    def up(ref: str, req: UpRequest | None = None) -> dict[str, Any]:
        req = req or UpRequest()
        durations = _measured(
            "up",
            lambda: repos.up(ref, key=_key(req.key), wait_answer=req.wait_answer, force=req.force),
        )
        return {"durations": durations}

    @app.post("/v1/repositories/{ref}/freeze")
    def freeze(ref: str, req: FreezeRequest) -> dict[str, Any]:
        record = _measured(
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
        return record.model_dump(mode="json")

    @app.get("/v1/repositories/{ref}/postcopy/{migration_id}")
    def postcopy(ref: str, migration_id: str) -> dict[str, Any]:
        if not re.fullmatch(MIGRATION_ID, migration_id):
            raise InvalidRequest(f"not a migration id: {migration_id!r}")
        statuses = repos.postcopy(ref, migration_id)
        return {"containers": [s.model_dump(mode="json") for s in statuses]}

    @app.post("/v1/repositories/{ref}/resume")
    def resume(ref: str, req: FreezeRequest) -> dict[str, Any]:
        return {"durations": _measured("resume", lambda: repos.resume(ref, req.migration_id))}

    @app.get("/v1/repositories/{ref}/services/{service}/logs")
    def logs(ref: str, service: str, tail: int = 100) -> dict[str, Any]:
        if not 1 <= tail <= 10000:
            raise InvalidRequest("tail must be between 1 and 10000")
        return {"lines": repos.logs(ref, service, tail)}

    @app.post("/v1/repositories/{ref}/down")
    def down(ref: str, req: DownRequest | None = None) -> dict[str, Any]:
        moved_to = req.moved_to if req else None
        return {"durations": _measured("down", lambda: repos.down(ref, moved_to=moved_to))}

    @app.delete("/v1/repositories/{ref}")
    def delete(ref: str, confirm: str = "") -> dict[str, Any]:
        return _measured("delete", lambda: repos.delete(ref, confirm)).model_dump(mode="json")

    app.include_router(build_router(repos, config, in_use))
    return app
