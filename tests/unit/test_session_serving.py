"""Repository sessions served as the agent serves (uvicorn, mutual TLS, on localhost, no
root): each request learns its client certificate, the gate refuses what a certificate
does not open, SessionClient reads streams and refusals, and a session's docker command
runs with an environment of its own and is killed when its reader goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.types import ASGIApp

from berth_agent.config import AgentConfig, TLSConfig
from berth_agent.repositories import Repositories
from berth_agent.runtime.session_exec import run_docker
from berth_agent.server.access import NEEDS_SESSION_CERTIFICATE, SESSIONS_DISABLED
from berth_agent.server.app import build_app
from berth_agent.server.peer import peer_certificate, with_peer_certificate
from berth_agent.server.serve import CLIENT_CAS, client_cas, server_config
from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.errors import AgentRefused, AgentUnreachable
from berth_common.agent_api.models import ExecExit, ExecOutput
from berth_common.agent_api.session_client import SessionClient
from berth_common.pki import CertFiles, create_ca, issue
from berth_common.sessions import SessionVerb
from session_certs import files, grant, session_certificate

pytestmark = pytest.mark.unit


class PKI:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = create_ca(files(directory, "ca"), cn="cluster")
        self.sessions_ca = create_ca(files(directory, "sessions-ca"), cn="sessions")
        self.agent = issue(self.ca, files(directory, "agent"), "host-a", ips=("127.0.0.1",))
        self.operator = issue(self.ca, files(directory, "operator"), "berth-operator")

    def session(self, name: str, verb: SessionVerb = SessionVerb.LOGS) -> CertFiles:
        return session_certificate(self.sessions_ca, files(self.dir, name), grant(verb))


def _config(pki: PKI, tmp: Path, sessions: bool = True) -> AgentConfig:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp / "data").mkdir(exist_ok=True)
    return AgentConfig(
        name="host-a",
        data_dir=tmp / "data",
        run_dir=tmp / "run",
        listen="127.0.0.1",
        port=port,
        tls=TLSConfig(
            cert=pki.agent.cert,
            key=pki.agent.key,
            client_ca=pki.ca.cert,
            session_ca=pki.sessions_ca.cert if sessions else None,
        ),
    )


@contextlib.contextmanager
def _served(config: AgentConfig, app: ASGIApp | None = None) -> Iterator[str]:
    """The agent's app (or app) served as serve() serves it, in a thread."""
    if app is None:
        app = build_app(Repositories(config), config, certificates_required=True)
    server = uvicorn.Server(server_config(config, app))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return PKI(tmp_path / "pki")


def _sessions(endpoint: str, pki: PKI, cert: CertFiles) -> SessionClient:
    return SessionClient(endpoint, pki.ca.cert.read_text(), cert.cert, cert.key, timeout=5)


def test_both_cas_are_trusted_and_each_opens_its_own_routes(
    pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(pki, tmp_path)
    caplog.set_level(logging.INFO, "berth.agent.sessions")
    with _served(config) as endpoint:
        bundle = config.run_dir / CLIENT_CAS
        assert bundle.stat().st_mode & 0o777 == 0o600
        assert bundle.read_text().count("BEGIN CERTIFICATE") == 2
        with AgentClient(endpoint, pki.ca.cert, pki.operator.cert, pki.operator.key) as operator:
            assert operator.healthz().machine == "host-a"
            assert operator.repositories() == []
            refused = operator._http.get("/v1/sessions/pulse/logs")
            assert refused.status_code == 403
            assert refused.json() == {"code": "Forbidden", "message": NEEDS_SESSION_CERTIFICATE}
        with _sessions(endpoint, pki, pki.session("logs")) as person:
            # Past the gate: the route itself answers (no such repository here).
            with pytest.raises(AgentRefused) as err:
                list(person.logs("pulse"))
            assert err.value.status == 404 and "'pulse' does not exist" in err.value.message
            with pytest.raises(AgentRefused) as err:
                list(person.exec("pulse", ["docker", "ps"]))
            assert err.value.status == 403
            assert "grants logs on pulse at host-a, not exec on pulse" in err.value.message
            for path in ("/v1/repositories", "/healthz", "/v1/heartbeat"):
                answer = person._http.get(path)
                assert answer.status_code == 403, path
                assert "opens only its own session route" in answer.json()["message"]
        with _sessions(endpoint, pki, pki.session("exec", SessionVerb.EXEC)) as person:
            with pytest.raises(AgentRefused) as err:
                list(person.exec("pulse", ["sh", "-c", "id"]))
            assert err.value.status == 400 and "argv[0] must be 'docker'" in err.value.message
    refusals = [r for r in caplog.records if r.getMessage() == "session refused"]
    assert {getattr(r, "user", None) for r in refusals} >= {"alice@example.com", None}
    assert any(getattr(r, "argv", None) == ["sh", "-c", "id"] for r in refusals)
    assert all(getattr(r, "reason", "") for r in refusals)


def test_without_a_sessions_ca_session_certificates_fail_the_handshake(
    pki: PKI, tmp_path: Path
) -> None:
    config = _config(pki, tmp_path, sessions=False)
    with _served(config) as endpoint:
        assert not (config.run_dir / CLIENT_CAS).exists()
        with (
            _sessions(endpoint, pki, pki.session("logs")) as person,
            pytest.raises(AgentUnreachable),
        ):
            list(person.logs("pulse"))
        with AgentClient(endpoint, pki.ca.cert, pki.operator.cert, pki.operator.key) as operator:
            refused = operator._http.get("/v1/sessions/pulse/logs")
            assert refused.status_code == 403 and refused.json()["message"] == SESSIONS_DISABLED


def test_the_sessions_ca_must_not_be_the_cluster_ca(pki: PKI, tmp_path: Path) -> None:
    config = _config(pki, tmp_path)
    same = config.model_copy(
        update={"tls": config.tls.model_copy(update={"session_ca": pki.ca.cert})}
    )
    with pytest.raises(SystemExit, match="a CA of its own"):
        client_cas(same)


def test_a_certificate_of_another_ca_fails_the_handshake(pki: PKI, tmp_path: Path) -> None:
    rogue_ca = create_ca(files(tmp_path, "rogue-ca"), cn="rogue")
    rogue = session_certificate(rogue_ca, files(tmp_path, "rogue"), grant())
    with (
        _served(_config(pki, tmp_path)) as endpoint,
        _sessions(endpoint, pki, rogue) as person,
        pytest.raises(AgentUnreachable),
    ):
        list(person.logs("pulse"))


def test_the_app_alone_refuses_sessions_and_serves_the_rest(pki: PKI, tmp_path: Path) -> None:
    config = _config(pki, tmp_path)
    app = build_app(Repositories(config), config)
    healthz = _ask(app, "/healthz")
    assert healthz.status_code == 200 and healthz.json()["machine"] == "host-a"
    refused = _ask(app, "/v1/sessions/pulse/logs")
    assert refused.status_code == 403 and refused.json()["message"] == NEEDS_SESSION_CERTIFICATE
    strict = build_app(Repositories(config), config, certificates_required=True)
    assert _ask(strict, "/healthz").status_code == 403


def _ask(app: ASGIApp, path: str) -> httpx.Response:
    """GET path of app in process: a scope without TLS, as in tests of the app alone."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
            return await client.get(path)

    return asyncio.run(get())


def _fake_agent() -> FastAPI:
    """Answers as the session routes do, with the client certificate's DER length."""
    app = FastAPI()

    @app.get("/v1/sessions/{repository}/logs")
    async def logs(repository: str, request: Request, tail: int, follow: bool) -> StreamingResponse:
        der = peer_certificate(request.scope)
        lines = [f"{repository} tail={tail} follow={follow}", f"der={len(der or b'')}"]
        return StreamingResponse(iter(line + "\n" for line in lines), media_type="text/plain")

    @app.post("/v1/sessions/{repository}/exec")
    async def exec_(repository: str, request: Request) -> StreamingResponse:
        argv = (await request.json())["argv"]
        frames: list[dict[str, object]] = [
            {"stream": "stdout", "data": " ".join(argv)},
            {"stream": "stderr", "data": "e"},
        ]
        if repository != "cut":
            frames.append({"exit": 3})
        return StreamingResponse(iter(json.dumps(f) + "\n" for f in frames))

    return app


def test_session_client_reads_lines_and_frames(pki: PKI, tmp_path: Path) -> None:
    config = _config(pki, tmp_path)
    with (
        _served(config, _fake_agent()) as endpoint,
        _sessions(endpoint, pki, pki.session("logs")) as person,
    ):
        lines = list(person.logs("pulse", tail=5, follow=True))
        assert lines[0] == "pulse tail=5 follow=True"
        assert int(lines[1].removeprefix("der=")) > 100  # the certificate reached the app
        frames = list(person.exec("pulse", ["docker", "ps"]))
        assert frames == [
            ExecOutput(stream="stdout", data="docker ps"),
            ExecOutput(stream="stderr", data="e"),
            ExecExit(exit=3),
        ]
        with pytest.raises(AgentUnreachable, match="before the command's exit code"):
            list(person.exec("cut", ["docker", "ps"]))


def test_with_peer_certificate_names_the_certificate_in_each_scope() -> None:
    seen: list[bytes | None] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(peer_certificate(scope))

    wrapped = with_peer_certificate(app, b"der")  # type: ignore[arg-type]
    asyncio.run(wrapped({"type": "http"}, None, None))  # type: ignore[arg-type]
    assert seen == [b"der"]
    assert with_peer_certificate(app, None) is app  # type: ignore[arg-type]


FAKE_DOCKER = """#!/bin/sh
case "$3" in sleep) echo "$$" > "$4" ;; esac
echo "args: $*"
echo "host=${DOCKER_HOST-unset} context=${DOCKER_CONTEXT-unset} mark=${BERTH_TEST_MARK-unset}"
echo "config entries: $(ls -A "$DOCKER_CONFIG" | wc -l) cwd=$(pwd)"
echo "é" >&2
case "$3" in sleep) exec sleep 30 ;; esac
exit 3
"""


def _frames(docker: Path, args: list[str], seconds: float = 10) -> list[ExecOutput | ExecExit]:
    async def collect() -> list[ExecOutput | ExecExit]:
        return [f async for f in run_docker(str(docker), Path("/run/x.sock"), args, seconds)]

    return asyncio.run(collect())


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    monkeypatch.setenv("DOCKER_HOST", "tcp://elsewhere:2375")
    monkeypatch.setenv("DOCKER_CONTEXT", "elsewhere")
    monkeypatch.setenv("BERTH_TEST_MARK", "agent")
    return docker


def test_a_session_command_runs_against_the_one_daemon_in_a_clean_environment(
    fake_docker: Path,
) -> None:
    frames = _frames(fake_docker, ["ps", "--all"])
    out = "".join(f.data for f in frames if isinstance(f, ExecOutput) and f.stream == "stdout")
    err = "".join(f.data for f in frames if isinstance(f, ExecOutput) and f.stream == "stderr")
    assert "args: -H unix:///run/x.sock ps --all" in out
    # Nothing of the agent's environment, whatever it holds.
    assert "host=unset context=unset mark=unset" in out
    assert "config entries: 0 cwd=" in out and "berth-session-" in out
    assert err == "é\n"
    assert frames[-1] == ExecExit(exit=3)


def test_a_session_command_is_killed_at_its_time_limit(fake_docker: Path) -> None:
    started = time.monotonic()
    frames = _frames(fake_docker, ["sleep", str(fake_docker.parent / "pid")], seconds=1)
    assert time.monotonic() - started < 10
    last = frames[-1]
    assert isinstance(last, ExecExit) and last.exit == 137
    assert last.message is not None and "killed after 1 s" in last.message


def test_a_session_command_is_killed_when_its_reader_goes_away(
    fake_docker: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"

    async def first_frame_then_leave() -> None:
        frames: AsyncIterator[ExecOutput | ExecExit]
        async with contextlib.aclosing(
            run_docker(str(fake_docker), Path("/run/x.sock"), ["sleep", str(pid_file)])
        ) as frames:
            async for _ in frames:
                break

    asyncio.run(first_frame_then_leave())
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid):
        assert time.monotonic() < deadline, "the command outlived its reader"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
