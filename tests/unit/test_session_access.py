"""Repository sessions on the agent, without a server: which peer may call which route,
which docker command lines a session may run, and exec's frames on the wire."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import TypeAdapter

from berth_agent.errors import InvalidRequest
from berth_agent.runtime.session_exec import docker_arguments, exit_code
from berth_agent.server.access import (
    NEEDS_SESSION_CERTIFICATE,
    SESSIONS_DISABLED,
    Peer,
    SessionRoute,
    decide,
    identify,
    session_route,
)
from berth_common.agent_api.models import ExecExit, ExecFrame, ExecOutput, ExecRequest
from berth_common.pki import METRICS_CN, METRICS_ORGANIZATION, CertFiles, create_ca, issue
from berth_common.sessions import SessionVerb
from session_certs import files, grant, session_certificate

pytestmark = pytest.mark.unit

LOGS = "/v1/sessions/pulse/logs"
EXEC = "/v1/sessions/pulse/exec"


class Certs:
    def __init__(self, directory: Path) -> None:
        self.cluster_ca = create_ca(files(directory, "ca"), cn="cluster")
        self.sessions_ca_files = create_ca(files(directory, "sessions-ca"), cn="sessions")
        self.sessions_ca = x509.load_pem_x509_certificate(self.sessions_ca_files.cert.read_bytes())
        self.dir = directory

    def der(self, made: CertFiles) -> bytes:
        cert = x509.load_pem_x509_certificate(made.cert.read_bytes())
        return cert.public_bytes(Encoding.DER)

    def operator(self) -> Peer:
        made = issue(self.cluster_ca, files(self.dir, "operator"), "berth-operator", org="berth")
        return identify(self.der(made), self.sessions_ca)

    def session(self, name: str = "s", verb: SessionVerb = SessionVerb.LOGS) -> Peer:
        made = session_certificate(self.sessions_ca_files, files(self.dir, name), grant(verb))
        return identify(self.der(made), self.sessions_ca)


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


def test_paths_under_sessions_name_a_repository_and_a_verb() -> None:
    assert session_route(LOGS) == SessionRoute("pulse", SessionVerb.LOGS)
    assert session_route(EXEC) == SessionRoute("pulse", SessionVerb.EXEC)
    assert session_route("/v1/sessions/pulse/shell") == SessionRoute("pulse", None)
    assert session_route("/v1/sessions") == SessionRoute("", None)
    assert session_route("/v1/sessions/pulse/logs/more") == SessionRoute("", None)
    for other in ("/v1/repositories", "/healthz", "/v1/sessionsx/pulse/logs", "/"):
        assert session_route(other) is None


def test_certificates_are_told_apart_by_their_issuer(certs: Certs) -> None:
    operator = certs.operator()
    assert not operator.session and operator.grant is None
    assert "berth-operator" in operator.subject
    session = certs.session()
    assert session.session and session.grant == grant()
    assert session.grant is not None and session.grant.groups == ("devs", "system:authenticated")


def test_a_session_certificate_opens_its_own_grant_only(certs: Certs) -> None:
    logs = certs.session()
    allowed = decide(logs, True, "host-a", LOGS)
    assert allowed.allowed and allowed.grant == grant()
    cases = {
        (EXEC, "host-a"): "grants logs on pulse at host-a, not exec on pulse",
        ("/v1/sessions/other/logs", "host-a"): "grants logs on pulse at host-a, not logs on other",
        (LOGS, "host-b"): "grants logs on pulse at host-a, not logs on pulse at host-b",
        ("/v1/sessions/pulse/shell", "host-a"): "not this route on pulse",
    }
    for (path, machine), words in cases.items():
        refused = decide(logs, True, machine, path)
        assert not refused.allowed and words in refused.reason, (path, refused.reason)
    execs = certs.session("e", SessionVerb.EXEC)
    assert decide(execs, True, "host-a", EXEC).allowed
    assert not decide(execs, True, "host-a", LOGS).allowed


def test_a_session_certificate_calls_no_other_route(certs: Certs) -> None:
    session = certs.session()
    for path in ("/v1/repositories", "/v1/heartbeat", "/healthz", "/v1/repositories/pulse/down"):
        refused = decide(session, True, "host-a", path)
        assert not refused.allowed
        assert refused.reason.endswith(f"(/v1/sessions/REPOSITORY/logs|exec), not {path}")
        assert refused.grant == grant()  # for the audit log: who tried


def test_the_cluster_certificates_keep_every_route_but_sessions(certs: Certs) -> None:
    operator = certs.operator()
    for path in ("/v1/repositories", "/v1/heartbeat", "/v1/transfers/t-1/data", "/healthz"):
        assert decide(operator, True, "host-a", path).allowed
        assert decide(operator, False, "host-a", path).allowed
    for path in (LOGS, EXEC, "/v1/sessions"):
        refused = decide(operator, True, "host-a", path)
        assert not refused.allowed and refused.reason == NEEDS_SESSION_CERTIFICATE


def test_without_a_sessions_ca_every_session_route_is_refused(certs: Certs) -> None:
    for peer in (certs.operator(), certs.session(), None):
        refused = decide(peer, False, "host-a", LOGS)
        assert not refused.allowed and refused.reason == SESSIONS_DISABLED
    # A session certificate the agent cannot recognise is just another certificate (the
    # TLS layer would not have accepted it: the sessions CA is not in its bundle then).
    made = session_certificate(certs.sessions_ca_files, files(certs.dir, "x"), grant())
    assert not identify(certs.der(made), None).session


def test_without_a_certificate_in_the_scope_only_sessions_are_refused() -> None:
    assert decide(None, True, "host-a", "/v1/repositories").allowed
    refused = decide(None, True, "host-a", LOGS)
    assert not refused.allowed and refused.reason == NEEDS_SESSION_CERTIFICATE


def test_an_expired_session_certificate_is_refused_on_a_kept_connection(certs: Certs) -> None:
    session = certs.session()
    assert session.expires is not None
    later = session.expires + dt.timedelta(seconds=1)
    refused = decide(session, True, "host-a", LOGS, now=later)
    assert not refused.allowed and "expired at" in refused.reason


def test_a_session_certificate_without_a_grant_opens_nothing(certs: Certs) -> None:
    # Signed by the sessions CA (by mistake) without a grant URI.
    made = issue(certs.sessions_ca_files, files(certs.dir, "bare"), "bob")
    peer = identify(certs.der(made), certs.sessions_ca)
    assert peer.session and peer.grant is None
    refused = decide(peer, True, "host-a", LOGS)
    assert not refused.allowed and "no usable grant" in refused.reason
    assert not decide(peer, True, "host-a", "/v1/repositories").allowed


@pytest.mark.parametrize(
    ("argv", "args"),
    [
        (["docker", "ps"], ["ps"]),
        (["docker", "logs", "pulse", "--tail", "5"], ["logs", "pulse", "--tail", "5"]),
        (["docker", "-D", "ps", "-H", "x"], ["-D", "ps", "-H", "x"]),  # after the command
        (["docker", "-l", "debug", "ps"], ["-l", "debug", "ps"]),
        (["docker", "--log-level=info", "ps"], ["--log-level=info", "ps"]),
        (["docker", "--version"], ["--version"]),
        (["docker", "run", "--rm", "alpine", "context"], ["run", "--rm", "alpine", "context"]),
    ],
)
def test_docker_command_lines_a_session_may_run(argv: list[str], args: list[str]) -> None:
    assert docker_arguments(argv) == args


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "argv[0] must be 'docker'"),
        (["sh", "-c", "id"], "argv[0] must be 'docker'"),
        (["/usr/bin/docker", "ps"], "argv[0] must be 'docker'"),
        (["docker", "-H", "unix:///run/docker.sock", "ps"], "option -H is not allowed"),
        (["docker", "-Hunix:///run/docker.sock", "ps"], "option -Hunix:///run/docker.sock is not"),
        (["docker", "--host=tcp://10.0.0.1:2375", "ps"], "option --host is not allowed"),
        (["docker", "-c", "other", "ps"], "option -c is not allowed"),
        (["docker", "--context", "other", "ps"], "option --context is not allowed"),
        (["docker", "--config", "/root/.docker", "ps"], "option --config is not allowed"),
        (["docker", "--tlsverify", "ps"], "option --tlsverify is not allowed"),
        (["docker", "--tlscacert=/x", "ps"], "option --tlscacert is not allowed"),
        (["docker", "-D", "-H", "x", "ps"], "option -H is not allowed"),
        (["docker", "-DH", "x", "ps"], "option -DH is not allowed"),
        (["docker", "context", "ls"], "docker context is not allowed"),
        (["docker", "-D", "context", "use", "x"], "docker context is not allowed"),
        (["docker", "ps", "a\0b"], "NUL"),
    ],
)
def test_docker_command_lines_a_session_may_not_run(argv: list[str], words: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        docker_arguments(argv)
    assert words in err.value.message
    assert err.value.status == 400


def test_exec_frames_on_the_wire() -> None:
    adapter: TypeAdapter[ExecFrame] = TypeAdapter(ExecFrame)
    out = ExecOutput(stream="stdout", data="pulse\n")
    assert json.loads(out.model_dump_json(exclude_none=True)) == {
        "stream": "stdout",
        "data": "pulse\n",
    }
    assert json.loads(ExecExit(exit=0).model_dump_json(exclude_none=True)) == {"exit": 0}
    assert adapter.validate_json('{"stream": "stderr", "data": "no"}') == ExecOutput(
        stream="stderr", data="no"
    )
    assert adapter.validate_json('{"exit": 137, "message": "killed"}') == ExecExit(
        exit=137, message="killed"
    )
    with pytest.raises(ValueError):
        adapter.validate_json('{"stream": "stdin", "data": "x"}')
    assert ExecRequest.model_validate({"argv": ["docker", "ps"]}).argv == ["docker", "ps"]
    with pytest.raises(ValueError):
        ExecRequest.model_validate({"argv": []})
    assert exit_code(3) == 3 and exit_code(-9) == 137


def test_a_metrics_certificate_reads_the_metrics_and_nothing_else(certs: Certs) -> None:
    made = issue(
        certs.cluster_ca, files(certs.dir, "metrics"), METRICS_CN, org=METRICS_ORGANIZATION
    )
    prometheus = identify(certs.der(made), certs.sessions_ca)
    assert prometheus.metrics_only and not prometheus.session
    assert decide(prometheus, True, "host-a", "/metrics").allowed
    assert decide(prometheus, True, "host-a", "/healthz").allowed
    for path in ("/v1/repositories", "/v1/heartbeat", "/v1/transfers/x", LOGS, "/metricsx"):
        refused = decide(prometheus, True, "host-a", path)
        assert not refused.allowed and "opens only /metrics and /healthz" in refused.reason, path
    # The operator's certificate (organization berth) is not a metrics certificate.
    assert not certs.operator().metrics_only
