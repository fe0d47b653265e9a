"""Transfer routes: receiving frames from a peer, and pushing to one on request."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Iterator

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from berth_agent.config import AgentConfig
from berth_agent.errors import InvalidRequest, Refusal
from berth_agent.repositories import Repositories
from berth_agent.server.metrics import OPERATIONS, TRANSFER_BYTES
from berth_agent.transfer.receiver import Receiver
from berth_agent.transfer.sender import Faults, Sender
from berth_agent.transfer.sweeper import InUse
from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.models import (
    Aborted,
    BeginRequest,
    CommitRequest,
    CommitResult,
    PushFailed,
    PushRequest,
    TransferState,
)


def peer_client(config: AgentConfig, endpoint: str) -> AgentClient:
    """This agent as a client of another agent, with its own certificate."""
    return AgentClient(endpoint, config.tls.client_ca, config.tls.cert, config.tls.key)


class PeerClients:
    """One client per peer endpoint, kept between pushes: a move's final push then reuses
    the connection its bulk rounds opened instead of a TLS handshake while frozen."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._clients: dict[str, AgentClient] = {}
        self._guard = threading.Lock()

    def get(self, endpoint: str) -> AgentClient:
        with self._guard:
            if endpoint not in self._clients:
                self._clients[endpoint] = peer_client(self.config, endpoint)
            return self._clients[endpoint]


def build_router(repos: Repositories, config: AgentConfig, in_use: InUse) -> APIRouter:
    """in_use is shared with the transfer sweeper, which leaves those transfers alone."""
    router = APIRouter()
    receiver = Receiver(config.data_dir, repos.store, config.tls.client_ca, config.name, in_use)
    sender = Sender(config.data_dir, repos.store, repos.crash, in_use)
    peers = PeerClients(config)

    @router.post("/v1/transfers")
    def begin(req: BeginRequest) -> TransferState:
        return receiver.begin(req)

    @router.get("/v1/transfers/{tid}")
    def status(tid: str) -> TransferState:
        return receiver.status(tid)

    @router.put("/v1/transfers/{tid}/data")
    async def data(
        tid: str, request: Request, from_block: int, x_berth_token: str = Header()
    ) -> TransferState:
        session = await run_in_threadpool(receiver.open_session, tid, x_berth_token, from_block)
        try:
            async for chunk in request.stream():
                await run_in_threadpool(session.feed, chunk)
        except ClientDisconnect:
            pass  # the sender will resume from what was persisted
        finally:
            state = await run_in_threadpool(session.close)
        TRANSFER_BYTES.labels("received").inc(state.received_bytes)
        return state

    @router.post("/v1/transfers/{tid}/commit")
    def commit(tid: str, req: CommitRequest) -> CommitResult:
        return receiver.commit(tid, req.token, req.root)

    @router.delete("/v1/transfers/{tid}")
    def abort(tid: str) -> Aborted:
        receiver.abort(tid)
        return Aborted(aborted=tid)

    @router.post("/v1/repositories/{ref}/push")
    def push(ref: str, req: PushRequest) -> StreamingResponse:
        if req.faults and not config.fault_injection:
            raise InvalidRequest("fault injection is disabled on this agent")
        repos.store.find(ref)  # a clear 404 before the stream starts
        return StreamingResponse(
            _push_events(sender, peers, ref, req), media_type="application/x-ndjson"
        )

    return router


def _push_events(sender: Sender, peers: PeerClients, ref: str, req: PushRequest) -> Iterator[bytes]:
    """Run the push in a thread and stream its progress, then its result (or what
    failed), as NDJSON: PushProgress lines, then a PushResult or a PushFailed."""
    events: queue.Queue[BaseModel | None] = queue.Queue()

    def work() -> None:
        try:
            result = sender.push(
                ref,
                peers.get(req.target),  # kept open for the next push to this peer
                req.token,
                req.transfer_id,
                compress=req.compress,
                bandwidth=req.bandwidth,
                faults=Faults(**req.faults),
                on_progress=events.put,
            )
            OPERATIONS.labels("push", "ok").inc()
            TRANSFER_BYTES.labels("sent").inc(result.bytes_sent)
            events.put(result)
        except Refusal as err:
            OPERATIONS.labels("push", "error").inc()
            events.put(PushFailed(status=err.status, code=err.code, message=err.message))
        except Exception as err:
            OPERATIONS.labels("push", "error").inc()
            events.put(
                PushFailed(status=500, code="Internal", message=f"{type(err).__name__}: {err}")
            )
        finally:
            events.put(None)

    threading.Thread(
        target=work, name=f"push-{req.transfer_id}-{uuid.uuid4().hex[:6]}", daemon=True
    ).start()
    while (event := events.get()) is not None:
        yield (json.dumps(event.model_dump(mode="json"), default=str) + "\n").encode()
