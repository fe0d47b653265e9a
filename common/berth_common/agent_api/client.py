"""A client for the agent's mTLS API, used by the operator, peer agents, the lab and tests.

Answers come back as the contract's models (models.py); a call that fails raises
AgentUnreachable or AgentRefused (errors.py). Request bodies are written from the
contract's request models without checking them here: the agent judges a request, so a
bad one gets the agent's own refusal (400, with what is wrong), as from any client.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from berth_common.agent_api.errors import AgentRefused, AgentUnreachable
from berth_common.agent_api.kept_connection import KeptConnection
from berth_common.agent_api.models import (
    BeginRequest,
    CommitRequest,
    CommitResult,
    CreateRequest,
    DownRequest,
    Durations,
    FreezeRecord,
    FreezeRequest,
    Health,
    Heartbeat,
    LogLines,
    MemoryMode,
    PostCopyReport,
    PostCopyStatus,
    PushEvent,
    PushFailed,
    PushProgress,
    PushRequest,
    PushResult,
    RepositoryRecord,
    RepositoryStatus,
    ResumeRequest,
    TransferState,
    UpAnswer,
    UpRequest,
)
from berth_common.agent_api.services import RepositoryAddress, RepositoryServices

# Agents are on the machines' own network: a connection not made in this long will not
# be. A partitioned peer (packets dropped) then fails in seconds, not after the whole
# request timeout, which matters while a migration holds the application frozen.
CONNECT_TIMEOUT = 10.0
# A freeze dumps and an up restores every page of memory kept inside the freeze: minutes
# for GiBs (4 GiB took 160 s here), which the default request timeout would cut short.
FREEZE_AND_UP_TIMEOUT = httpx.Timeout(900.0, connect=CONNECT_TIMEOUT)

M = TypeVar("M", bound=BaseModel)
_LISTING = TypeAdapter(list[RepositoryStatus])
_PUSH_EVENT: TypeAdapter[PushProgress | PushResult | PushFailed] = TypeAdapter(PushEvent)


@contextlib.contextmanager
def _answered() -> Iterator[None]:
    """No answer from the agent, whatever the transport says why: AgentUnreachable."""
    try:
        yield
    except httpx.HTTPError as err:
        raise AgentUnreachable(str(err)) from err


def _refusal(response: httpx.Response) -> AgentRefused:
    return _refused(response.status_code, response.content)


def _refused(status: int, content: bytes) -> AgentRefused:
    try:
        body = json.loads(content)
    except ValueError:
        return AgentRefused(status, "Error", content.decode(errors="replace"))
    return AgentRefused(
        status,
        body.get("code", "Error"),
        body.get("message") or str(body.get("detail")),
    )


def _body(request: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """The request's JSON, from its model's fields as given: not checked here (the agent
    judges them), only named as the model names them."""
    unknown = fields.keys() - request.model_fields.keys()
    if unknown:
        raise TypeError(f"{request.__name__} has no field {', '.join(sorted(unknown))}")
    return request.model_construct(**fields).model_dump(mode="json", warnings=False)


def _b64(key: bytes | None) -> str | None:
    return None if key is None else base64.b64encode(key).decode()


def tls_context(ca: Path | bytes, cert: Path, key: Path) -> ssl.SSLContext:
    """The client side of the agents' mutual TLS: trust ca (a file, or PEM data), present
    cert and key."""
    if isinstance(ca, bytes):
        context = ssl.create_default_context(cadata=ca.decode())
    else:
        context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


class AgentClient:
    def __init__(
        self,
        endpoint: str,
        ca: Path | bytes,
        cert: Path,
        key: Path,
        timeout: float = 120,
        keep_alive: float = 5.0,
        *,
        context: ssl.SSLContext | None = None,
    ) -> None:
        """ca: a file of CA certificates, or PEM data (a Machine's caBundle); keep_alive:
        seconds an idle connection is kept for the next call (the agent keeps its end
        75 s); context: one made by tls_context() from the same ca, cert and key, shared
        by many clients (loading them costs more than a quick call)."""
        context = context or tls_context(ca, cert, key)
        self.endpoint = endpoint
        self._heartbeat: tuple[str, Heartbeat] | None = None  # the last one, with its ETag
        self._beats = KeptConnection(endpoint, context, timeout, keep_alive)
        self._http = httpx.Client(
            base_url=endpoint,
            verify=context,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            limits=httpx.Limits(keepalive_expiry=keep_alive),
        )

    def close(self) -> None:
        self._beats.close()
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON; raises AgentRefused or AgentUnreachable."""
        with _answered():
            response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _refusal(response)
        return response.json()

    def _get(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self._call(method, path, **kwargs))

    def healthz(self) -> Health:
        return self._get(Health, "GET", "/healthz")

    def repositories(self) -> list[RepositoryStatus]:
        return _LISTING.validate_python(self._call("GET", "/v1/repositories"))

    def heartbeat(self) -> Heartbeat:
        """Health and every repository in one call. While nothing changed the agent
        answers 304 and the last answer is returned again (the same object): nothing is
        sent, parsed or validated twice."""
        last = self._heartbeat
        headers = {"If-None-Match": last[0]} if last is not None else {}
        answer = self._beats.get("/v1/heartbeat", headers)  # kept_connection.py: why
        if answer.status == 304 and last is not None:
            return last[1]
        if answer.status == 404:  # an agent older than the route
            return Heartbeat(health=self.healthz(), repositories=self.repositories())
        if answer.status >= 400:
            raise _refused(answer.status, answer.body)
        beat = Heartbeat.model_validate_json(answer.body)
        self._heartbeat = (answer.etag, beat) if answer.etag else None
        return beat

    def status(self, ref: str) -> RepositoryStatus:
        return self._get(RepositoryStatus, "GET", f"/v1/repositories/{ref}")

    def create(
        self,
        name: str,
        size: str,
        *,
        template: str | None = None,
        services: RepositoryServices | Mapping[str, Any] | None = None,
        address: RepositoryAddress | Mapping[str, Any] | None = None,
        guid: str | None = None,
        key: bytes | None = None,
    ) -> RepositoryRecord:
        """services, address: the models, or their JSON (sent as it is, for the agent to
        judge)."""
        body = _body(
            CreateRequest,
            name=name,
            size=size,
            guid=guid,
            template=template,
            services=services,
            address=address,
            key=_b64(key),
        )
        return self._get(RepositoryRecord, "POST", "/v1/repositories", json=body)

    def up(
        self,
        ref: str,
        key: bytes | None = None,
        *,
        wait_answer: float | None = None,
        force: bool = False,
    ) -> UpAnswer:
        body = _body(UpRequest, key=_b64(key), wait_answer=wait_answer, force=force)
        return self._get(
            UpAnswer,
            "POST",
            f"/v1/repositories/{ref}/up",
            json=body,
            timeout=FREEZE_AND_UP_TIMEOUT,
        )

    def freeze(
        self,
        ref: str,
        migration_id: str,
        *,
        checkpoint: bool = True,
        memory: MemoryMode | str = MemoryMode.FREEZE,
        page_server_address: str | None = None,
        stop_grace: int | None = None,
    ) -> FreezeRecord:
        body = _body(
            FreezeRequest,
            migration_id=migration_id,
            checkpoint=checkpoint,
            memory=memory,
            page_server_address=page_server_address,
            stop_grace=stop_grace,
        )
        return self._get(
            FreezeRecord,
            "POST",
            f"/v1/repositories/{ref}/freeze",
            json=body,
            timeout=FREEZE_AND_UP_TIMEOUT,
        )

    def postcopy(self, ref: str, migration_id: str) -> list[PostCopyStatus]:
        """Each container's post-copy of the migration on this host."""
        path = f"/v1/repositories/{ref}/postcopy/{migration_id}"
        return self._get(PostCopyReport, "GET", path).containers

    def resume(self, ref: str, migration_id: str) -> Durations:
        body = _body(ResumeRequest, migration_id=migration_id)
        return self._get(Durations, "POST", f"/v1/repositories/{ref}/resume", json=body)

    def logs(self, ref: str, service: str, tail: int = 100) -> list[str]:
        path = f"/v1/repositories/{ref}/services/{service}/logs"
        return self._get(LogLines, "GET", path, params={"tail": tail}).lines

    def down(self, ref: str, *, moved_to: str | None = None) -> Durations:
        body = _body(DownRequest, moved_to=moved_to)
        return self._get(Durations, "POST", f"/v1/repositories/{ref}/down", json=body)

    def delete(self, ref: str, confirm: str) -> RepositoryRecord:
        return self._get(
            RepositoryRecord, "DELETE", f"/v1/repositories/{ref}", params={"confirm": confirm}
        )

    # --- transfers: the receiving agent's side -------------------------------------------
    def begin_transfer(
        self, transfer_id: str, token: str, record: RepositoryRecord, offer_base_root: str | None
    ) -> TransferState:
        body = _body(
            BeginRequest,
            transfer_id=transfer_id,
            token=token,
            record=record,
            offer_base_root=offer_base_root,
        )
        return self._get(TransferState, "POST", "/v1/transfers", json=body)

    def transfer_status(self, transfer_id: str) -> TransferState:
        return self._get(TransferState, "GET", f"/v1/transfers/{transfer_id}")

    def send_frames(
        self, transfer_id: str, token: str, from_block: int, frames: Iterator[bytes]
    ) -> TransferState:
        """frames is read as the upload goes; what it raises comes out of here as it is."""
        return self._get(
            TransferState,
            "PUT",
            f"/v1/transfers/{transfer_id}/data",
            params={"from_block": from_block},
            headers={"X-Berth-Token": token, "Content-Type": "application/octet-stream"},
            content=frames,
        )

    def commit_transfer(self, transfer_id: str, token: str, root: str) -> CommitResult:
        body = _body(CommitRequest, token=token, root=root)
        return self._get(CommitResult, "POST", f"/v1/transfers/{transfer_id}/commit", json=body)

    def abort_transfer(self, transfer_id: str, timeout: float | None = None) -> None:
        """timeout: seconds for this call alone (default: the client's)."""
        options = {} if timeout is None else {"timeout": timeout}
        self._call("DELETE", f"/v1/transfers/{transfer_id}", **options)

    # --- transfers: asking the sending agent to push ------------------------------------
    def push(
        self,
        ref: str,
        target: str,
        token: str,
        transfer_id: str,
        *,
        compress: bool = False,
        bandwidth: float | None = None,
        faults: dict[str, int] | None = None,
    ) -> Iterator[PushProgress | PushResult]:
        """Progress events as the source agent reports them; the last one is the result.
        A push that fails once its stream has begun raises AgentRefused too."""
        body = _body(
            PushRequest,
            target=target,
            token=token,
            transfer_id=transfer_id,
            compress=compress,
            bandwidth=bandwidth,
            faults=faults or {},
        )
        with (
            _answered(),
            self._http.stream(
                "POST",
                f"/v1/repositories/{ref}/push",
                json=body,
                timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),  # a push streams for long
            ) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise _refusal(response)
            for line in response.iter_lines():
                if line.strip():
                    event = _PUSH_EVENT.validate_json(line)
                    if isinstance(event, PushFailed):
                        raise AgentRefused(event.status, event.code, event.message)
                    yield event
