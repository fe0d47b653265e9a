"""Simulated berth agents for benchmarks: many machines' agent API in one process.

Speaks the subset of the agent's mTLS API that the operator and the migration driver
call (`AgentClient`: healthz, heartbeat (with its ETag and 304), repositories, status,
create, up, freeze, push, resume, down, delete; postcopy, which has nothing to report,
and abort_transfer, which has nothing to forget) with repositories held in memory and
small sleeps where a real agent does work, so thousands of placements can be reconciled
without dockerds, CRIU or images. One asyncio loop in one thread serves every machine
(100 machines and 5,000 repositories are fine), each on its own 127.0.0.1 port with a
listen queue of 1024, with a minimal HTTP/1.1 server (keep-alive, Content-Length bodies,
a chunked NDJSON stream for push); it raises its open-files limit to the hard limit, one
descriptor per connection.

    .venv/bin/python bench/simagent.py SPEC.json

SPEC.json: {"ca": PATH, "client_cn": "berth-operator",
            "machines": [{"name": N, "cert": PATH, "key": PATH, "repositories": [R, ...]}]}
Once listening it prints one JSON line: {"control": PORT, "machines": {N: PORT, ...}}.
The control port (plain HTTP, 127.0.0.1) answers GET /stats with the requests and TLS
connections each machine received. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import resource
import signal
import ssl
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from berth_common.agent_api.etag import entity_tag

MiB = 2**20
# What a real agent spends on each step, roughly (lab hosts, a small pulse repository).
UP_SECONDS = 0.4
FREEZE_SECONDS = 0.3
RESUME_SECONDS = 0.2
DOWN_SECONDS = 0.1
CREATE_SECONDS = 0.2
BULK_SECONDS = 0.4  # the first (full) round; later rounds and the final delta are shorter
DELTA_SECONDS = 0.15
PROGRESS_EVERY = 0.1
IMAGE_BYTES = 2 * 2**30
ALLOCATED_BYTES = 300 * MiB
FREE_BYTES = 2**40
MAX_HEAD = 64 * 1024
BACKLOG = 1024


class HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class SimRepo:
    name: str
    guid: str
    size_bytes: int = IMAGE_BYTES
    allocated_bytes: int = ALLOCATED_BYTES
    created_at: str = field(default_factory=_now)
    moved_to: str | None = None
    mounted: bool = False
    dockerd: bool = False
    containers_running: bool = False
    frozen_by: str | None = None
    pushes: int = 0  # transfers sent from here: the first is full, later ones are deltas

    def record(self) -> dict[str, Any]:
        return {
            "guid": self.guid,
            "name": self.name,
            "size_bytes": self.size_bytes,
            "created_at": self.created_at,
            "encrypted": False,
            "moved_to": self.moved_to,
        }

    def status(self) -> dict[str, Any]:
        containers = []
        if self.dockerd:
            containers.append(
                {
                    "name": "app",
                    "id": self.guid[:10],
                    "image": "pulse",
                    "state": "running" if self.containers_running else "exited",
                    "checkpoint": True,
                    "startedAt": self.created_at,
                }
            )
        return {
            **self.record(),
            "sizeBytes": self.size_bytes,
            "allocatedBytes": self.allocated_bytes,
            "mounted": self.mounted,
            "mountPath": f"/run/berth/mounts/{self.guid}" if self.mounted else None,
            "docker": {
                "running": self.dockerd,
                "pid": 4242 if self.dockerd else None,
                "socket": f"/run/berth/{self.guid}/docker.sock",
            },
            "containers": containers,
            "frozenBy": self.frozen_by,
            "quiesced": self.frozen_by is not None,
        }

    def run(self) -> None:
        self.mounted = self.dockerd = self.containers_running = True
        self.frozen_by = None


@dataclass
class Stats:
    requests: int = 0
    connections: int = 0
    routes: Counter[str] = field(default_factory=Counter)

    def wire(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "connections": self.connections,
            "routes": dict(self.routes),
        }


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            value = json.loads(self.body)
        except ValueError:
            raise HTTPError(400, "Invalid", "the body is not JSON") from None
        if not isinstance(value, dict):
            raise HTTPError(400, "Invalid", "the body is not a JSON object")
        return value


# A response: (status, JSON body) or a stream of NDJSON events.
@dataclass(frozen=True)
class Tagged:
    """An answer with an ETag (the heartbeat's): a body already encoded, or 304's none."""

    status: int
    data: bytes
    etag: str


Response = tuple[int, Any] | Tagged | AsyncIterator[dict[str, Any]]
Handler = Callable[[Request], Awaitable[Response]]


class SimAgent:
    """One machine's agent: its repositories, its counters, its routes."""

    def __init__(self, name: str, fleet: Fleet) -> None:
        self.name, self.fleet = name, fleet
        self.repos: dict[str, SimRepo] = {}
        self.stats = Stats()
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def add(self, name: str, *, running: bool = True) -> SimRepo:
        repo = SimRepo(name=name, guid=uuid.uuid4().hex)
        if running:
            repo.run()
        self.repos[name] = repo
        return repo

    def find(self, ref: str) -> SimRepo:
        repo = self.repos.get(ref) or next((r for r in self.repos.values() if r.guid == ref), None)
        if repo is None:
            raise HTTPError(404, "NotFound", f"no repository {ref!r} on {self.name}")
        return repo

    # --- routing -----------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        parts = [unquote(p) for p in req.path.strip("/").split("/") if p]
        match (req.method, parts):
            case ("GET", ["healthz"]):
                return 200, self.healthz()
            case ("GET", ["v1", "heartbeat"]):
                return self.heartbeat(req.headers.get("if-none-match", ""))
            case ("GET", ["v1", "repositories"]):
                return 200, [r.status() for r in self.repos.values()]
            case ("POST", ["v1", "repositories"]):
                return await self.create(req.json())
            case ("GET", ["v1", "repositories", ref]):
                return 200, self.find(ref).status()
            case ("DELETE", ["v1", "repositories", ref]):
                return self.delete(ref, (req.query.get("confirm") or [""])[0])
            case ("POST", ["v1", "repositories", ref, "up"]):
                return await self.up(ref, req.json())
            case ("POST", ["v1", "repositories", ref, "freeze"]):
                return await self.freeze(ref, req.json())
            case ("POST", ["v1", "repositories", ref, "resume"]):
                return await self.resume(ref)
            case ("POST", ["v1", "repositories", ref, "down"]):
                return await self.down(ref, req.json())
            case ("POST", ["v1", "repositories", ref, "push"]):
                body = req.json()
                repo = self.find(ref)  # a clear 404 before the stream starts
                return self.push(repo, body)
            case ("GET", ["v1", "repositories", ref, "postcopy", _migration_id]):
                self.find(ref)  # nothing restored lazily: every page came inside the freeze
                return 200, {"containers": []}
            case ("DELETE", ["v1", "transfers", _transfer_id]):
                return 200, {}  # pushes commit at once: nothing half-received to forget
        raise HTTPError(404, "NotFound", f"{req.method} {req.path} is not simulated")

    @staticmethod
    def route(req: Request) -> str:
        """The request's route without the repository name, for the counters."""
        parts = req.path.strip("/").split("/")
        if len(parts) >= 3 and parts[:2] in (["v1", "repositories"], ["v1", "transfers"]):
            parts[2] = "{ref}" if parts[1] == "repositories" else "{id}"
        if len(parts) >= 5 and parts[3] == "postcopy":
            parts[4] = "{id}"
        return f"{req.method} /{'/'.join(parts)}"

    # --- operations --------------------------------------------------------------------
    def healthz(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "machine": self.name,
            "version": "0.1.0-sim",
            "datastore": {"sizeBytes": 2 * FREE_BYTES, "freeBytes": FREE_BYTES},
        }

    def heartbeat(self, if_none_match: str) -> Tagged:
        repositories = [r.status() for r in self.repos.values()]
        data = json.dumps({"health": self.healthz(), "repositories": repositories}).encode()
        etag = entity_tag(data)
        return Tagged(304, b"", etag) if etag in if_none_match else Tagged(200, data, etag)

    async def create(self, body: dict[str, Any]) -> Response:
        name = str(body.get("name") or "")
        if not name:
            raise HTTPError(400, "Invalid", "name is required")
        if name in self.repos:
            raise HTTPError(409, "Conflict", f"repository {name!r} exists on {self.name}")
        await asyncio.sleep(CREATE_SECONDS)
        repo = self.add(name, running=False)
        if body.get("guid"):
            repo.guid = str(body["guid"])
        return 201, repo.record()

    def delete(self, ref: str, confirm: str) -> Response:
        repo = self.find(ref)
        if confirm != repo.name:
            raise HTTPError(400, "Invalid", f"deleting {repo.name!r} needs confirm={repo.name!r}")
        if repo.dockerd:
            raise HTTPError(409, "Conflict", f"repository {repo.name!r} is running")
        del self.repos[repo.name]
        return 200, repo.record()

    async def up(self, ref: str, body: dict[str, Any]) -> Response:
        repo = self.find(ref)
        if repo.moved_to and not body.get("force"):
            raise HTTPError(
                409,
                "Conflict",
                f"repository {repo.name!r} moved to {repo.moved_to}; this copy is stale",
            )
        restore = repo.frozen_by is not None or not repo.dockerd
        await asyncio.sleep(UP_SECONDS)
        repo.moved_to = None
        repo.run()
        durations = {"mount": 0.05, "dockerd": 0.15, "restore" if restore else "start": 0.15}
        durations["answer"] = round(UP_SECONDS - sum(durations.values()), 3)
        return 200, {"durations": durations}

    async def freeze(self, ref: str, body: dict[str, Any]) -> Response:
        repo = self.find(ref)
        migration_id = str(body.get("migration_id") or "")
        if not repo.dockerd:
            raise HTTPError(409, "Conflict", f"repository {repo.name!r} is not running")
        await asyncio.sleep(FREEZE_SECONDS)
        repo.containers_running, repo.frozen_by = False, migration_id
        checkpoint = bool(body.get("checkpoint", True))
        return 200, {
            "migration_id": migration_id,
            "checkpoint": f"berth-{migration_id}",
            "checkpointed": ["app"] if checkpoint else [],
            "stopped": [] if checkpoint else ["app"],
            "durations": {"checkpoint:app": FREEZE_SECONDS - 0.05, "fsfreeze": 0.05},
        }

    async def resume(self, ref: str) -> Response:
        repo = self.find(ref)
        await asyncio.sleep(RESUME_SECONDS)
        repo.run()
        return 200, {"durations": {"restore:app": RESUME_SECONDS}}

    async def down(self, ref: str, body: dict[str, Any]) -> Response:
        repo = self.find(ref)
        await asyncio.sleep(DOWN_SECONDS)
        repo.mounted = repo.dockerd = repo.containers_running = False
        repo.frozen_by = None
        if body.get("moved_to"):
            repo.moved_to = str(body["moved_to"])
        return 200, {"durations": {"down": DOWN_SECONDS}}

    async def push(self, repo: SimRepo, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        target = self.fleet.by_endpoint(str(body.get("target") or ""))
        full = repo.pushes == 0
        repo.pushes += 1
        total = repo.allocated_bytes if full else (2 if repo.frozen_by is None else 1) * MiB
        seconds = BULK_SECONDS if full else DELTA_SECONDS
        started = time.monotonic()
        steps = max(1, round(seconds / PROGRESS_EVERY))
        for step in range(1, steps + 1):
            await asyncio.sleep(seconds / steps)
            done = total * step // steps
            yield {
                "event": "progress",
                "bytes_done": done,
                "bytes_total": total,
                "rate": done / max(time.monotonic() - started, 1e-6),
            }
        if target is None:
            yield {"event": "error", "status": 502, "code": "PeerUnreachable", "message": "?"}
            return
        # What the receiving agent holds once the transfer commits: the image, unmounted,
        # marked as the sender's until a forced `up` runs it.
        copy = dataclasses.replace(repo, moved_to=self.name, frozen_by=None, pushes=0)
        copy.mounted = copy.dockerd = copy.containers_running = False
        target.repos[repo.name] = copy
        took = time.monotonic() - started
        yield {
            "event": "result",
            "transfer_id": body.get("transfer_id"),
            "mode": "full" if full else "delta",
            "image_size": repo.size_bytes,
            "bytes_planned": total,
            "bytes_sent": total,
            "base_id": None if full else "sim-base",
            "root": "0" * 64,
            "attempts": 1,
            "durations": {"plan": 0.01, "send": round(took - 0.02, 4), "commit": 0.01},
            "summary": f"{total} bytes (sim)",
        }


class Fleet:
    """Every simulated machine, the HTTP plumbing, and the control endpoint."""

    def __init__(self, ca: Path, client_cn: str | None) -> None:
        self.ca, self.client_cn = ca, client_cn
        self.agents: dict[str, SimAgent] = {}
        self._servers: list[asyncio.Server] = []
        self.control_port = 0
        self.started = time.monotonic()

    def by_endpoint(self, endpoint: str) -> SimAgent | None:
        port = urlsplit(endpoint).port
        return next((a for a in self.agents.values() if a.port == port), None)

    def _tls(self, cert: Path, key: Path) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        context.load_verify_locations(cafile=str(self.ca))
        context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, as the real agent
        return context

    async def start(self, spec: dict[str, Any]) -> None:
        for machine in spec["machines"]:
            agent = SimAgent(machine["name"], self)
            for repo in machine.get("repositories", []):
                agent.add(repo)
            tls = self._tls(Path(machine["cert"]), Path(machine["key"]))
            server = await asyncio.start_server(
                functools.partial(self._serve, agent=agent),
                "127.0.0.1",
                0,
                ssl=tls,
                # Thousands of placements' first looks arrive at once: a short listen
                # queue would drop SYNs, and each retry costs the caller a second.
                backlog=BACKLOG,
            )
            agent.port = server.sockets[0].getsockname()[1]
            self.agents[agent.name] = agent
            self._servers.append(server)
        control = await asyncio.start_server(
            functools.partial(self._serve, agent=None), "127.0.0.1", 0
        )
        self.control_port = control.sockets[0].getsockname()[1]
        self._servers.append(control)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def stats(self) -> dict[str, Any]:
        machines = {n: a.stats.wire() for n, a in self.agents.items()}
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "requests": sum(m["requests"] for m in machines.values()),
            "connections": sum(m["connections"] for m in machines.values()),
            "machines": machines,
        }

    # --- HTTP/1.1, just enough for httpx ---------------------------------------------------
    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, agent: SimAgent | None
    ) -> None:
        try:
            if agent is not None:
                agent.stats.connections += 1
                if self.client_cn and _peer_cn(writer) != self.client_cn:
                    await _send(writer, 403, {"code": "Forbidden", "message": "wrong client"})
                    return
            while True:
                req = await _read_request(reader)
                if req is None:
                    return
                keep = req.headers.get("connection", "").lower() != "close"
                await self._dispatch(req, writer, agent, keep)
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # shutting down: a kept-alive connection was waiting for its next request
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    async def _dispatch(
        self, req: Request, writer: asyncio.StreamWriter, agent: SimAgent | None, keep: bool
    ) -> None:
        if agent is None:
            if req.method == "GET" and req.path == "/stats":
                await _send(writer, 200, self.stats(), keep)
            else:
                await _send(writer, 404, {"code": "NotFound", "message": req.path}, keep)
            return
        agent.stats.requests += 1
        agent.stats.routes[SimAgent.route(req)] += 1
        try:
            response = await agent.handle(req)
        except HTTPError as err:
            await _send(writer, err.status, {"code": err.code, "message": err.message}, keep)
            return
        if isinstance(response, tuple):
            await _send(writer, response[0], response[1], keep)
        elif isinstance(response, Tagged):
            await _send_raw(writer, response.status, response.data, keep, {"ETag": response.etag})
        else:
            await _stream(writer, response)


def _peer_cn(writer: asyncio.StreamWriter) -> str | None:
    cert = writer.get_extra_info("peercert") or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if not err.partial:
            return None  # the client closed a kept-alive connection
        raise
    except asyncio.LimitOverrunError:
        raise ConnectionError("request head too large") from None
    if len(head) > MAX_HEAD:
        raise ConnectionError("request head too large")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length") or 0))
    url = urlsplit(target)
    return Request(method.upper(), url.path, parse_qs(url.query), headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


REASONS = {
    200: "OK", 201: "Created", 304: "Not Modified", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found",
}  # fmt: skip


async def _send(writer: asyncio.StreamWriter, status: int, body: Any, keep: bool = True) -> None:
    await _send_raw(writer, status, json.dumps(body).encode(), keep)


async def _send_raw(
    writer: asyncio.StreamWriter,
    status: int,
    data: bytes,
    keep: bool,
    headers: dict[str, str] | None = None,
) -> None:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra}"
        f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
    )
    writer.write(head.encode() + data)
    await writer.drain()


async def _stream(writer: asyncio.StreamWriter, events: AsyncIterator[dict[str, Any]]) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    async for event in events:
        line = json.dumps(event).encode() + b"\n"
        writer.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _main(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    fleet = Fleet(Path(spec["ca"]), spec.get("client_cn"))
    await fleet.start(spec)
    print(
        json.dumps(
            {
                "control": fleet.control_port,
                "machines": {n: a.port for n, a in fleet.agents.items()},
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fleet.close()


def raise_open_files() -> None:
    """One descriptor per connection, every machine's in this one process: up to the
    hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} SPEC.json")
    raise_open_files()
    asyncio.run(_main(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
