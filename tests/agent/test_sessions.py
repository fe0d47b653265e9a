"""Repository sessions on a real lab host: a person's logs of, and docker commands on,
one repository, with a session certificate of the lab's sessions CA (as the operator's
signer makes it), and everything such a certificate does not open refused."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from berth_agent.server.access import NEEDS_SESSION_CERTIFICATE
from berth_common.agent_api.errors import AgentRefused, AgentUnreachable
from berth_common.agent_api.models import ExecExit, ExecFrame, ExecOutput
from berth_common.agent_api.session_client import SessionClient
from berth_common.sessions import SessionVerb
from berth_lab import Lab
from berth_lab.agents import agent_endpoint
from session_certs import files, grant, session_certificate

pytestmark = pytest.mark.agent

REPO = "session-pulse"
CONTAINER = "pulse"  # pulse's one service (berth_agent.apps.pulse)
_COUNTER = re.compile(r"memory counter=(\d+)")
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ")


@pytest.fixture(scope="module")
def repository(lab: Lab) -> Iterator[str]:
    with lab.agent("a") as agent:
        agent.create(REPO, "1G", template="pulse")
        try:
            agent.up(REPO, wait_answer=30)
            yield REPO
        finally:
            agent.down(REPO)
            agent.delete(REPO, confirm=REPO)


class People:
    """Session clients of host a's agent, each with a certificate of its own."""

    def __init__(self, lab: Lab, directory: Path) -> None:
        self.lab, self.dir, self.count = lab, directory, 0

    def client(
        self,
        verb: SessionVerb = SessionVerb.LOGS,
        repository: str = REPO,
        machine: str = "host-a",
        now: dt.datetime | None = None,
    ) -> SessionClient:
        self.count += 1
        cert = session_certificate(
            self.lab.pki.sessions_ca,
            files(self.dir, f"person-{self.count}"),
            grant(verb, repository=repository, machine=machine),
            now=now,
        )
        return SessionClient(
            agent_endpoint(self.lab.host("a")),
            self.lab.pki.ca.cert.read_text(),
            cert.cert,
            cert.key,
            timeout=30,
        )


@pytest.fixture
def people(lab: Lab, tmp_path: Path) -> People:
    return People(lab, tmp_path)


def _counters(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for m in map(_COUNTER.search, lines) if m]


def _output(frames: list[ExecFrame], stream: str = "stdout") -> str:
    return "".join(f.data for f in frames if isinstance(f, ExecOutput) and f.stream == stream)


def test_logs_of_one_container_and_of_all(repository: str, people: People) -> None:
    time.sleep(3)  # a few beats
    with people.client() as person:
        lines = list(person.logs(repository, container=CONTAINER, tail=2))
        assert len(lines) == 2 and all(_STAMP.match(line) for line in lines), lines
        assert len(_counters(lines)) == 2
        every = list(person.logs(repository, tail=3))
        assert len(every) == 3 and all(line.startswith(f"[{CONTAINER}] ") for line in every)
        assert _counters(every)
        with pytest.raises(AgentRefused) as err:
            list(person.logs(repository, container="nope"))
        assert err.value.status == 404 and "no container 'nope'" in err.value.message
        with pytest.raises(AgentRefused) as err:
            list(person.logs(repository, tail=0))
        assert err.value.status == 400 and "tail" in err.value.message


@pytest.mark.timeout(120)
def test_a_followed_log_brings_new_lines(lab: Lab, repository: str, people: People) -> None:
    with people.client() as person:
        lines = person.logs(repository, container=CONTAINER, tail=1, follow=True)
        seen = [next(lines)]
        for line in lines:
            seen.append(line)
            if _counters(seen)[-1] >= _counters(seen)[0] + 2:
                break
        lines.close()  # type: ignore[attr-defined]
        counters = _counters(seen)
        assert counters == list(range(counters[0], counters[0] + len(counters))), seen
    # The agent saw the client go and closed its end (the docker stream with it).
    left = _wait_for_event(
        lab,
        lambda e: (
            e["msg"] == "session ended"
            and e.get("follow") is True
            and e["end"] == "the client went away"
        ),
    )
    assert left["verb"] == "logs" and left["lines"] >= 3


@pytest.mark.timeout(120)
def test_a_command_is_killed_when_its_client_goes_away(
    lab: Lab, repository: str, people: People
) -> None:
    argv = ["docker", "logs", "--follow", "--tail", "1", CONTAINER]
    with people.client(SessionVerb.EXEC) as person:
        frames = person.exec(repository, argv)
        first = next(frames)
        assert isinstance(first, ExecOutput) and _counters([first.data])
        assert _docker_clis(argv), "the command is not running"
        frames.close()  # type: ignore[attr-defined]
    left = _wait_for_event(lab, lambda e: e["msg"] == "session ended" and e.get("argv") == argv)
    assert left["exit"] is None and left["end"] == "the client went away"
    deadline = time.monotonic() + 10
    while _docker_clis(argv):
        assert time.monotonic() < deadline, "the command outlived its client"
        time.sleep(0.1)


def _docker_clis(argv: list[str]) -> list[int]:
    """Pids of docker CLIs running argv[1:] (the lab's hosts share this pid namespace)."""
    wanted = "\0".join(argv[1:]).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.rstrip(b"\0").endswith(wanted) and b"unix://" in cmdline:
                found.append(int(proc.name))
    return found


def _wait_for_event(
    lab: Lab, matches: Callable[[dict[str, Any]], bool], seconds: float = 15
) -> dict[str, Any]:
    """The agent's last sessions log entry that matches, once it is there."""
    deadline = time.monotonic() + seconds
    while True:
        found = [e for e in _session_events(lab) if matches(e)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, _session_events(lab)[-5:]
        time.sleep(0.2)


def test_exec_runs_docker_against_the_repository_only(repository: str, people: People) -> None:
    with people.client(SessionVerb.EXEC) as person:
        frames = list(person.exec(repository, ["docker", "ps", "--format", "{{.Names}}"]))
        assert frames[-1] == ExecExit(exit=0)
        assert _output(frames).split() == [CONTAINER]  # its own daemon: no other container
        frames = list(person.exec(repository, ["docker", "logs", CONTAINER, "--tail", "5"]))
        assert frames[-1] == ExecExit(exit=0)
        assert len(_counters(_output(frames).splitlines())) == 5
        frames = list(person.exec(repository, ["docker", "inspect", "no-such-thing"]))
        last = frames[-1]
        assert isinstance(last, ExecExit) and last.exit == 1
        assert "no-such-thing" in _output(frames, "stderr")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["sh", "-c", "id"], "argv[0] must be 'docker'"),
        (["docker", "-H", "unix:///run/docker.sock", "ps"], "option -H is not allowed"),
        (["docker", "--context", "default", "ps"], "option --context is not allowed"),
        (["docker", "context", "ls"], "docker context is not allowed"),
    ],
)
def test_exec_refuses_what_could_reach_another_daemon(
    repository: str, people: People, argv: list[str], words: str
) -> None:
    with people.client(SessionVerb.EXEC) as person, pytest.raises(AgentRefused) as err:
        list(person.exec(repository, argv))
    assert err.value.status == 400 and words in err.value.message


def test_a_grant_opens_its_own_machine_repository_and_verb_only(
    repository: str, people: People
) -> None:
    cases: list[tuple[SessionClient, str]] = [
        (people.client(machine="host-b"), "grants logs on session-pulse at host-b, not logs"),
        (people.client(repository="other"), "grants logs on other at host-a, not logs on"),
    ]
    for client, words in cases:
        with client, pytest.raises(AgentRefused) as err:
            list(client.logs(repository))
        assert err.value.status == 403 and words in err.value.message, err.value.message
    with people.client() as logs_only, pytest.raises(AgentRefused) as err:
        list(logs_only.exec(repository, ["docker", "ps"]))
    assert err.value.status == 403
    assert "grants logs on session-pulse at host-a, not exec on session-pulse" in err.value.message
    with people.client(SessionVerb.EXEC) as exec_only, pytest.raises(AgentRefused) as err:
        list(exec_only.logs(repository))
    assert err.value.status == 403 and "not logs on session-pulse" in err.value.message


def test_an_expired_session_certificate_fails_the_handshake(
    repository: str, people: People
) -> None:
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with people.client(now=an_hour_ago) as expired, pytest.raises(AgentUnreachable):
        list(expired.logs(repository))


def test_certificates_keep_to_their_own_routes(lab: Lab, repository: str, people: People) -> None:
    with lab.agent("a") as operator:
        answer = operator._http.get(f"/v1/sessions/{repository}/logs")
        assert answer.status_code == 403
        assert answer.json() == {"code": "Forbidden", "message": NEEDS_SESSION_CERTIFICATE}
        assert operator.status(repository).name == repository  # its own routes as before
    with people.client() as person:
        for path in ("/v1/repositories", f"/v1/repositories/{repository}", "/healthz"):
            answer = person._http.get(path)
            assert answer.status_code == 403, path
            assert "opens only its own session route" in answer.json()["message"]
        down = person._http.post(f"/v1/repositories/{repository}/down")
        assert down.status_code == 403
    with lab.agent("a") as operator:
        assert operator.status(repository).docker.running


def _session_events(lab: Lab) -> list[dict[str, Any]]:
    lines = (lab.host("a").plan.state_dir / "agent.log").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in events if e["logger"] == "berth.agent.sessions"]


def test_the_agent_log_records_who_did_what(lab: Lab, repository: str, people: People) -> None:
    argv = ["docker", "ps", "--all", "--quiet"]
    with people.client(SessionVerb.EXEC) as person:
        assert list(person.exec(repository, argv))[-1] == ExecExit(exit=0)
        with pytest.raises(AgentRefused):
            list(person.exec(repository, ["docker", "-H", "tcp://elsewhere", "ps"]))
    ended = _wait_for_event(lab, lambda e: e["msg"] == "session ended" and e.get("argv") == argv)
    assert ended["user"] == "alice@example.com"
    assert ended["groups"] == ["devs", "system:authenticated"]
    assert ended["placement"] == f"team/{repository}"
    assert ended["repository"] == repository and ended["verb"] == "exec"
    assert ended["exit"] == 0 and ended["seconds"] >= 0
    refused = _wait_for_event(
        lab, lambda e: e["msg"] == "session refused" and "-H" in e.get("argv", [])
    )
    assert "option -H is not allowed" in refused["reason"]
    assert refused["user"] == "alice@example.com"


@pytest.mark.timeout(180)
def test_a_followed_log_ends_when_the_repository_stops_here(
    lab: Lab, repository: str, people: People
) -> None:
    """Last: it takes the repository down (and up again)."""
    seen: list[str] = []
    failed: list[BaseException] = []

    def follow(person: SessionClient) -> None:
        try:
            seen.extend(person.logs(repository, tail=1, follow=True))
        except BaseException as err:
            failed.append(err)

    with people.client() as person, lab.agent("a") as agent:
        reader = threading.Thread(target=follow, args=(person,), daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while not seen:
            assert time.monotonic() < deadline and not failed, failed
            time.sleep(0.1)
        agent.down(repository)
        try:
            reader.join(60)
            assert not reader.is_alive(), "the followed log outlived the repository's dockerd"
            assert not failed, failed
            with pytest.raises(AgentRefused) as err:
                list(person.logs(repository))
            assert err.value.status == 409
            assert err.value.message == f"repository {repository} is not running on host-a"
            with people.client(SessionVerb.EXEC) as runner, pytest.raises(AgentRefused) as err:
                list(runner.exec(repository, ["docker", "ps"]))
            assert err.value.status == 409
        finally:
            agent.up(repository)
