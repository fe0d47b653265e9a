"""The agents' wire contract (berth_common.agent_api): the models write exactly the JSON
the agent has always answered, byte for byte; they read the simulated agent's answers;
and the client turns each way a call fails into AgentUnreachable or AgentRefused."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import simagent
from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.errors import AgentRefused, AgentUnreachable, describe
from berth_common.agent_api.kept_connection import KeptConnection
from berth_common.agent_api.models import (
    CommitResult,
    Durations,
    FreezeRecord,
    Health,
    Heartbeat,
    PostCopyReport,
    PushFailed,
    PushProgress,
    PushResult,
    RepositoryRecord,
    RepositoryStatus,
    TransferState,
    UpAnswer,
    wire,
)
from berth_common.agent_api.services import RepositoryServices, ServiceSpec

pytestmark = pytest.mark.unit

RECORD = {
    "guid": "9f1c2d3e-0000-4000-8000-000000000001",
    "name": "pulse",
    "size_bytes": 2147483648,
    "created_at": "2026-01-01T00:00:00+00:00",
    "encrypted": False,
    "moved_to": None,
}
# As Repositories.status built it by hand: the record, the image's usage, then the rest.
STATUS = {
    **RECORD,
    "sizeBytes": 2147483648,
    "allocatedBytes": 314572800,
    "mounted": True,
    "mountPath": "/var/lib/berth/mounts/9f1c2d3e-0000-4000-8000-000000000001",
    "docker": {"running": True, "pid": 4242, "socket": "/run/berth/x/docker.sock", "error": None},
    "containers": [
        {
            "name": "pulse",
            "id": "0123456789",
            "image": "berth/pulse:1",
            "state": "running",
            "checkpoint": True,
            "startedAt": "2026-01-01T00:00:01.5Z",
            "ports": [{"container": 8080, "protocol": "tcp", "host": 18000}],
            "address": "10.251.214.200",
        },
        {
            "name": "batch",
            "id": "abcdef0123",
            "image": None,
            "state": "exited",
            "checkpoint": False,
            "startedAt": None,
            "ports": [],
            "address": None,
        },
    ],
    "frozenBy": None,
    "quiesced": False,
}
HEALTH = {
    "status": "ok",
    "machine": "host-a",
    "version": "0.1.0",
    "datastore": {"sizeBytes": 10737418240, "freeBytes": 5368709120},
}
FROZEN = {
    "migration_id": "m-1",
    "checkpoint": "berth-m-1",
    "checkpointed": ["pulse"],
    "stopped": ["batch"],
    "killed": [],
    "durations": {"checkpoint:pulse": 0.31, "quiesce": 1e-05},
    "complete": True,
    "postcopy": {"pulse": {"address": "10.1.0.2", "port": 40123}},
    "frozen_at": 1700000000.25,
}
TRANSFER = {
    "transfer_id": "m-1-final",
    "record": RECORD,
    "mode": "delta",
    "base_root": "ab" * 32,
    "source": "host-a",
    "next_block": 12,
    "received_bytes": 4096,
    "full_reason": None,
}
# A push's NDJSON lines, as the agent wrote them: {"event": ..., **fields}.
PROGRESS = {
    "event": "progress",
    "transfer_id": "t-1",
    "mode": "full",
    "bytes_total": 300,
    "bytes_done": 100,
    "bytes_sent": 90,
    "elapsed": 0.25,
    "rate": 360.0,
    "attempts": 1,
}
RESULT = {
    "event": "result",
    "summary": "300 B transferred in 0.50s (full)",
    "transfer_id": "t-1",
    "mode": "full",
    "image_size": 1024,
    "bytes_planned": 300,
    "bytes_sent": 300,
    "base_id": None,
    "root": "cd" * 32,
    "attempts": 1,
    "durations": {"snapshot": 0.01, "send": 0.4, "commit": 0.09},
}
FAILED = {"event": "error", "status": 502, "code": "TransferFailed", "message": "no route"}


@pytest.mark.parametrize(
    ("model", "answer"),
    [
        (RepositoryStatus, STATUS),
        (RepositoryRecord, RECORD),
        (Health, HEALTH),
        (FreezeRecord, FROZEN),
        (Durations, {"durations": {"mount": 0.05, "dockerd": 0.5, "answer": 0.125}}),
        (
            UpAnswer,
            {
                "durations": {"restore:pulse": 0.3},
                "revival": {
                    "migration_id": "m-1",
                    "frozen_at": 1700000000.25,
                    "answered_at": 1700000001.5,
                },
            },
        ),
        (UpAnswer, {"durations": {"mount": 0.05}, "revival": None}),
        (TransferState, TRANSFER),
        (CommitResult, {"root": "ef" * 32, "mode": "full", "commit_seconds": 0.0123}),
        (
            PostCopyReport,
            {
                "containers": [
                    {
                        "container": "pulse",
                        "progress": "done",
                        "seconds": 1.5,
                        "error": None,
                        "bytes_received": 10,
                        "pages": 3,
                        "faulted_pages": 1,
                    }
                ]
            },
        ),
        (PushProgress, PROGRESS),
        (PushResult, RESULT),
        (PushFailed, FAILED),
    ],
)
def test_each_answer_is_written_as_before_byte_for_byte(
    model: type[BaseModel], answer: dict[str, Any]
) -> None:
    parsed = model.model_validate(answer)
    assert json.dumps(wire(parsed)) == json.dumps(answer)
    assert json.dumps(parsed.model_dump(mode="json", by_alias=True)) == json.dumps(answer)


def test_attributes_are_snake_case_where_the_wire_is_camel_case() -> None:
    status = RepositoryStatus.model_validate(STATUS)
    assert (status.image_bytes, status.allocated_bytes) == (2147483648, 314572800)
    assert status.mount_path and status.frozen_by is None and status.docker.running
    assert status.containers[0].started_at == "2026-01-01T00:00:01.5Z"
    assert Health.model_validate(HEALTH).datastore.free_bytes == 5368709120


# --- the simulated agent (bench/simagent.py) speaks the same contract -----------------------
@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> simagent.SimAgent:
    for pause in (
        "UP_SECONDS",
        "FREEZE_SECONDS",
        "RESUME_SECONDS",
        "DOWN_SECONDS",
        "CREATE_SECONDS",
        "BULK_SECONDS",
        "DELTA_SECONDS",
    ):
        monkeypatch.setattr(simagent, pause, 0.0)
    fleet = simagent.Fleet(Path("/nonexistent"), None)
    source, target = simagent.SimAgent("sim-a", fleet), simagent.SimAgent("sim-b", fleet)
    source.port, target.port = 1, 2
    fleet.agents = {"sim-a": source, "sim-b": target}
    source.add("pulse")
    return source


def test_the_simulated_agent_answers_parse(sim: simagent.SimAgent) -> None:
    assert Health.model_validate(sim.healthz()).machine == "sim-a"
    status = RepositoryStatus.model_validate(sim.find("pulse").status())
    assert status.docker.running and status.containers[0].ports == []
    frozen = asyncio.run(sim.freeze("pulse", {"migration_id": "m-1"}))
    assert isinstance(frozen, tuple)
    assert FreezeRecord.model_validate(frozen[1]).checkpointed == ["app"]
    beat = sim.heartbeat("")
    assert beat.status == 200
    parsed = Heartbeat.model_validate_json(beat.data)
    assert parsed.health.machine == "sim-a" and [r.name for r in parsed.repositories] == ["pulse"]
    assert sim.heartbeat(beat.etag) == simagent.Tagged(304, b"", beat.etag)
    postcopy = simagent.Request("GET", "/v1/repositories/pulse/postcopy/m-1", {}, {}, b"")
    answer = asyncio.run(sim.handle(postcopy))
    assert isinstance(answer, tuple)
    assert PostCopyReport.model_validate(answer[1]).containers == []
    for call in (sim.up("pulse", {"force": True}), sim.resume("pulse"), sim.down("pulse", {})):
        answer = asyncio.run(call)
        assert isinstance(answer, tuple)
        Durations.model_validate(answer[1])

    async def events() -> list[dict[str, Any]]:
        body = {"target": "https://127.0.0.1:2", "transfer_id": "t-1"}
        return [e async for e in sim.push(sim.find("pulse"), body)]

    lines = asyncio.run(events())
    assert all(PushProgress.model_validate(e).bytes_total > 0 for e in lines[:-1])
    assert PushResult.model_validate(lines[-1]).mode == "full"


# --- the client: answers, refusals, no answer --------------------------------------------
def client_with(handler: Callable[[httpx.Request], httpx.Response]) -> AgentClient:
    """An AgentClient whose HTTP goes to handler instead of an agent."""
    client = AgentClient.__new__(AgentClient)
    client.endpoint, client._heartbeat = "https://agent.test:7443", None
    client._http = httpx.Client(base_url=client.endpoint, transport=httpx.MockTransport(handler))
    client._beats = KeptConnection(client.endpoint, ssl.create_default_context(), 5, 60)
    return client


def test_answers_come_back_as_models() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/repositories":
            return httpx.Response(200, json=[STATUS])
        return httpx.Response(200, json=STATUS)

    with client_with(answer) as agent:
        assert agent.status("pulse") == RepositoryStatus.model_validate(STATUS)
        (listed,) = agent.repositories()
        assert listed.name == "pulse" and listed.containers[0].ports[0].host == 18000


class FakeAgentServer(http.server.ThreadingHTTPServer):
    """A real HTTP server on loopback answering what the heartbeat asks, as an agent
    does (with_route=False: an agent older than /v1/heartbeat). Test-only."""

    def __init__(self, *, with_route: bool = True) -> None:
        self.with_route, self.connections = with_route, 0
        self.seen: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn

            def setup(self) -> None:
                server.connections += 1
                super().setup()

            def do_GET(self) -> None:
                server.seen.append((self.path, self.headers.get("If-None-Match")))
                if self.path == "/v1/heartbeat" and server.with_route:
                    body = {"health": health_wire("m"), "repositories": [STATUS]}
                    if self.headers.get("If-None-Match") == '"v1"':
                        self._answer(304, None)
                    else:
                        self._answer(200, body)
                elif self.path == "/healthz":
                    self._answer(200, health_wire("old"))
                elif self.path == "/v1/repositories":
                    self._answer(200, [STATUS])
                else:
                    self._answer(404, {"detail": "Not Found"})

            def _answer(self, status: int, body: Any) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def client(self) -> AgentClient:
        agent = AgentClient.__new__(AgentClient)
        agent.endpoint, agent._heartbeat = self.endpoint, None
        agent._beats = KeptConnection(self.endpoint, ssl.create_default_context(), 5, 60)
        agent._http = httpx.Client(base_url=self.endpoint)
        return agent

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def test_a_heartbeat_unchanged_is_answered_304_and_read_from_the_last_answer() -> None:
    server = FakeAgentServer()
    try:
        with server.client() as agent:
            first = agent.heartbeat()
            assert first.health.machine == "m" and first.repositories[0].name == "pulse"
            assert agent.heartbeat() is first  # 304: nothing parsed again
            assert agent.heartbeat() is first
        assert server.seen == [("/v1/heartbeat", None)] + [("/v1/heartbeat", '"v1"')] * 2
        assert server.connections == 1, "the connection was not kept"
    finally:
        server.close()


def test_a_heartbeat_on_a_connection_the_agent_closed_is_asked_again_on_a_new_one() -> None:
    server = FakeAgentServer()
    try:
        with server.client() as agent:
            agent.heartbeat()
            kept = agent._beats._connection
            assert kept is not None and kept.sock is not None
            kept.sock.shutdown(socket.SHUT_RDWR)  # as when the agent restarted meanwhile
            assert agent.heartbeat().health.machine == "m"
        assert server.connections == 2
    finally:
        server.close()


def test_no_heartbeat_answer_is_unreachable() -> None:
    server = FakeAgentServer()
    endpoint = server.endpoint
    server.close()
    agent = AgentClient.__new__(AgentClient)
    agent._heartbeat = None
    agent._beats = KeptConnection(endpoint, ssl.create_default_context(), 5, 60)
    with pytest.raises(AgentUnreachable, match="Connection refused") as raised:
        agent.heartbeat()
    # Named as the client's other calls name it (httpx's ConnectError) in a condition.
    assert describe(raised.value).startswith("ConnectError: "), describe(raised.value)


def test_a_heartbeat_from_an_agent_without_the_route_is_its_two_older_calls() -> None:
    server = FakeAgentServer(with_route=False)
    try:
        with server.client() as agent:
            beat = agent.heartbeat()
            assert beat.health.machine == "old"
            assert [r.name for r in beat.repositories] == ["pulse"]
    finally:
        server.close()


def health_wire(machine: str) -> dict[str, Any]:
    return {
        "status": "ok", "machine": machine, "version": "1",
        "datastore": {"sizeBytes": 2, "freeBytes": 1},
    }  # fmt: skip


def test_request_bodies_are_the_agent_s_request_models_unchecked() -> None:
    sent: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        if request.url.path.endswith("/freeze"):
            return httpx.Response(200, json=FROZEN)
        return httpx.Response(201, json=RECORD)

    services = RepositoryServices(services=[ServiceSpec(name="web", image="nginx")])
    with client_with(record) as agent:
        agent.create("pulse", "2G", services=services, key=b"k")
        agent.create("pulse", "2G", services={"services": [{"name": "web", "image": "x"}] * 2})
        agent.freeze("pulse", "m-1", memory="postcopy", stop_grace=9999)
    created, as_given, frozen = sent
    assert created["services"] == services.model_dump(mode="json") and created["key"] == "aw=="
    # The agent judges a request: what it would refuse goes to it as it was given.
    assert as_given["services"] == {"services": [{"name": "web", "image": "x"}] * 2}
    assert frozen == {
        "migration_id": "m-1",
        "checkpoint": True,
        "memory": "postcopy",
        "page_server_address": None,
        "stop_grace": 9999,
    }


def test_an_error_answer_is_a_refusal_with_its_status_code_and_message() -> None:
    answers = iter(
        [
            httpx.Response(409, json={"code": "Conflict", "message": "moved to host-b"}),
            httpx.Response(404, json={"detail": "Not Found"}),  # a route the agent lacks
            httpx.Response(502, text="bad gateway"),  # a proxy's, not JSON
        ]
    )
    with client_with(lambda _: next(answers)) as agent:
        refusals = []
        for _ in range(3):
            with pytest.raises(AgentRefused) as refused:
                agent.up("pulse")
            refusals.append(refused.value)
    assert [(r.status, r.code, r.message) for r in refusals] == [
        (409, "Conflict", "moved to host-b"),
        (404, "Error", "Not Found"),
        (502, "Error", "bad gateway"),
    ]
    assert str(refusals[0]) == "Conflict (409): moved to host-b"


def test_no_answer_is_unreachable_with_the_transport_s_error_underneath() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with client_with(refuse) as agent, pytest.raises(AgentUnreachable) as unreachable:
        agent.healthz()
    err = unreachable.value
    assert isinstance(err.__cause__, httpx.ConnectError)
    assert str(err) == err.message == "[Errno 111] Connection refused"
    assert describe(err) == "ConnectError: [Errno 111] Connection refused"
    assert describe(AgentRefused(404, "NotFound", "x")) == "AgentRefused: NotFound (404): x"


def ndjson(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def test_a_push_yields_progress_then_its_result() -> None:
    with client_with(lambda _: httpx.Response(200, content=ndjson(PROGRESS, RESULT))) as agent:
        events = list(agent.push("pulse", "https://b:7443", "token", "t-1"))
    assert [type(e) for e in events] == [PushProgress, PushResult]


def test_a_push_that_fails_once_streaming_is_refused() -> None:
    with client_with(lambda _: httpx.Response(200, content=ndjson(PROGRESS, FAILED))) as agent:
        pushed = agent.push("pulse", "https://b:7443", "token", "t-1")
        assert isinstance(next(pushed), PushProgress)
        with pytest.raises(AgentRefused) as refused:
            next(pushed)
    assert (refused.value.status, refused.value.code) == (502, "TransferFailed")


def test_a_push_whose_stream_breaks_is_unreachable() -> None:
    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Any:
            yield ndjson(PROGRESS)
            raise httpx.RemoteProtocolError("peer closed connection")

    broken = client_with(lambda _: httpx.Response(200, stream=Broken()))
    with broken as agent, pytest.raises(AgentUnreachable, match="peer closed"):
        list(agent.push("pulse", "https://b:7443", "token", "t-1"))
