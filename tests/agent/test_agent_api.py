"""berth-agent's API on a real lab host: mTLS, bad input, adoption, isolation."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from berth_agent.apps import pulse
from berth_agent.runtime.spec import bridge_name
from berth_agent.store.mounts import dm_crypt_available
from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.errors import AgentRefused, AgentUnreachable
from berth_common.pki import CertFiles, create_ca, issue
from berth_lab import Lab
from berth_lab.agents import agent_endpoint

pytestmark = pytest.mark.agent


@pytest.mark.faults
def test_request_without_client_certificate_is_refused_in_the_handshake(lab: Lab) -> None:
    host = lab.host("a")
    context = ssl.create_default_context(cafile=str(lab.pki.ca.cert))
    answer = b""
    with socket.create_connection((host.address, 7443), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host.address) as tls:
                # TLS 1.3 reports the server's refusal on the first read.
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = tls.recv(100)
        except (ssl.SSLError, ConnectionResetError) as err:
            assert "certificate" in str(err).lower() or isinstance(err, ConnectionResetError)
    assert answer == b"", "the server answered HTTP to a client without a certificate"
    # The same through an HTTP client: a transport error, never an HTTP status.
    with httpx.Client(verify=context, timeout=5) as plain, pytest.raises(httpx.TransportError):
        plain.get(f"{agent_endpoint(host)}/healthz")


@pytest.mark.faults
def test_certificate_from_another_ca_is_refused(lab: Lab) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rogue_ca = create_ca(CertFiles(Path(tmp, "ca.crt"), Path(tmp, "ca.key")), cn="rogue")
        rogue = issue(rogue_ca, CertFiles(Path(tmp, "c.crt"), Path(tmp, "c.key")), "berth-operator")
        client = AgentClient(
            agent_endpoint(lab.host("a")), lab.pki.ca.cert, rogue.cert, rogue.key, timeout=5
        )
        with pytest.raises(AgentUnreachable):
            client.healthz()
    with lab.agent("a") as good:
        assert good.healthz().machine == "host-a"


def test_openapi_and_metrics(lab: Lab) -> None:
    with lab.agent("a") as agent:
        spec = agent._http.get("/openapi.json").json()
        assert "/v1/repositories/{ref}/freeze" in spec["paths"]
        metrics = agent._http.get("/metrics").text
        assert "berth_agent_repositories" in metrics


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "../etc", "size": "1G"}, 400, "name '../etc' is invalid"),
        ({"name": "a/b", "size": "1G"}, 400, "is invalid"),
        ({"name": "UPPER", "size": "1G"}, 400, "is invalid"),
        ({"name": "ok", "size": "lots"}, 400, "size 'lots' is invalid"),
        ({"name": "ok", "size": "100M"}, 400, "out of range"),
        ({"name": "ok", "size": "1G", "template": "nope"}, 400, "unknown template"),
        ({"name": "ok", "size": "1G", "guid": "not-a-guid"}, 400, "not a UUID"),
        ({"name": "ok", "size": "16T"}, 507, "exceeds the datastore"),
    ],
)
@pytest.mark.faults
def test_bad_create_requests_get_a_clear_error_and_change_nothing(
    lab: Lab, body: dict[str, str], status: int, words: str
) -> None:
    with lab.agent("a") as agent:
        before = agent.repositories()
        with pytest.raises(AgentRefused) as err:
            agent.create(**body)  # type: ignore[arg-type]
        assert err.value.status == status and words in err.value.message
        assert agent.repositories() == before
        images = lab.host("a").plan.datastore_mount / "images"
        assert not images.exists() or all("ok" not in p.read_text() for p in images.glob("*.json"))


def test_unknown_repository_and_unconfirmed_delete(lab: Lab) -> None:
    with lab.agent("a") as agent:
        calls: list[Callable[[], object]] = [
            lambda: agent.status("ghost"),
            lambda: agent.up("ghost"),
        ]
        for call in calls:
            with pytest.raises(AgentRefused) as err:
                call()
            assert err.value.status == 404 and "'ghost' does not exist" in err.value.message
        agent.create("keep-me", "1G")
        try:
            with pytest.raises(AgentRefused, match="needs confirm='keep-me'"):
                agent.delete("keep-me", confirm="")
            assert agent.status("keep-me").name == "keep-me"
        finally:
            agent.delete("keep-me", confirm="keep-me")


def test_a_repository_mounted_elsewhere_is_not_mounted_again(lab: Lab) -> None:
    host = lab.host("a")
    with lab.agent("a") as agent:
        guid = agent.create("busy", "1G").guid
        image = f"/var/lib/berth/images/{guid}.img"
        host.run(["mkdir", "-p", "/tmp/elsewhere"])
        host.run(["mount", "-o", "loop", image, "/tmp/elsewhere"])
        try:
            with pytest.raises(AgentRefused) as err:
                agent.up("busy")
            assert err.value.status == 409 and "already mounted at /tmp/elsewhere" in str(err.value)
            assert agent.status("busy").mounted is False
            assert agent.status("busy").docker.running is False
        finally:
            host.run(["umount", "/tmp/elsewhere"])
            agent.delete("busy", confirm="busy")


@pytest.mark.faults
def test_agent_restart_adopts_running_dockerd(lab: Lab) -> None:
    host = lab.host("b")
    with lab.agent("b") as agent:
        agent.create("adopt", "1G", template="pulse")
        agent.up("adopt")
        pid = agent.status("adopt").docker.pid
    lab.stop_agent(host)  # SIGKILL: the dockerd and its containers keep running
    lab.start_agent(host)
    with lab.agent("b") as agent:
        try:
            assert agent.status("adopt").docker.pid == pid
            agent.up("adopt")
            status = agent.status("adopt")
            assert status.docker.pid == pid, "a second dockerd was started"
            assert [c.state for c in status.containers] == ["running"]
            # Hosts share the machine's pid namespace: count this repository's daemons.
            socket_path = status.docker.socket
            dockerds = host.run(["pgrep", "-f", f"dockerd .*-H unix://{socket_path}"]).stdout
            assert len(dockerds.split()) == 1
        finally:
            agent.down("adopt")
            agent.delete("adopt", confirm="adopt")


def test_repositories_get_their_own_dockerd_socket_and_network(lab: Lab) -> None:
    second = pulse.services()
    second.services[0].ports[0].host = 8081  # one host port can serve one repository
    with lab.agent("a") as agent:
        agent.create("iso-one", "1G", template="pulse")
        agent.create("iso-two", "1G", services=second.model_dump())
        try:
            for name in ("iso-one", "iso-two"):
                agent.up(name)
            one, two = agent.status("iso-one"), agent.status("iso-two")
            assert one.docker.socket != two.docker.socket
            assert one.docker.pid != two.docker.pid
            subnets = []
            for status in (one, two):
                out = (
                    lab.host("a")
                    .run(
                        [
                            "/usr/bin/docker",
                            "-H",
                            f"unix://{status.docker.socket}",
                            "network",
                            "inspect",
                            "berth",
                        ]
                    )
                    .stdout
                )
                subnets.append(json.loads(out)[0]["IPAM"]["Config"][0]["Subnet"])
                # Each daemon sees only its own repository's containers.
                assert [c.name for c in status.containers] == ["pulse"]
            assert subnets[0] != subnets[1]
        finally:
            for name in ("iso-one", "iso-two"):
                agent.down(name)
                agent.delete(name, confirm=name)


def test_down_removes_the_bridge_and_up_brings_it_back(lab: Lab) -> None:
    """dockerd leaves its bridges behind; a moved-away repository must not keep one."""
    host = lab.host("a")

    def bridge_exists(name: str) -> bool:
        return host.run(["ip", "link", "show", "dev", name], check=False).returncode == 0

    with lab.agent("a") as agent:
        bridge = bridge_name(agent.create("bridged", "1G", template="pulse").guid)
        try:
            agent.up("bridged")
            assert bridge_exists(bridge)
            agent.down("bridged")
            assert not bridge_exists(bridge), f"{bridge} outlived its dockerd"
            agent.up("bridged")
            assert bridge_exists(bridge)
            with socket.create_connection((host.address, 8080), timeout=5) as conn:
                assert conn.recv(100).startswith(b"pulse")
        finally:
            agent.down("bridged")
            agent.delete("bridged", confirm="bridged")


def test_a_host_port_taken_by_another_repository_is_a_clear_conflict(lab: Lab) -> None:
    with lab.agent("b") as agent:
        for name in ("port-one", "port-two"):
            agent.create(name, "1G", template="pulse")
        try:
            agent.up("port-one")
            with pytest.raises(AgentRefused) as err:
                agent.up("port-two")
            assert err.value.status == 409
            assert "'pulse' could not start" in err.value.message
            assert "8080" in err.value.message or "address already in use" in err.value.message
        finally:
            for name in ("port-one", "port-two"):
                agent.down(name)
                agent.delete(name, confirm=name)


def test_local_admin_commands(lab: Lab) -> None:
    host = lab.host("b")
    cli = [sys.executable, "-m", "berth_agent.cli", "repo"]
    host.run([*cli, "create", "admin", "--size", "1G"])
    try:
        listed = json.loads(host.run([*cli, "list", "-o", "json"]).stdout)
        assert [r["name"] for r in listed if r["name"] == "admin"] == ["admin"]
        bad = host.run([*cli, "create", "bad/name", "--size", "1G"], check=False)
        assert bad.returncode == 1 and b"is invalid" in bad.stderr
        text = host.run([*cli, "status", "admin"]).stdout.decode()
        assert "mounted: no" in text
    finally:
        host.run([*cli, "delete", "admin", "--confirm", "admin"])


@pytest.mark.skipif(
    not dm_crypt_available(),
    reason="this kernel has no device-mapper/dm-crypt (CONFIG_DM_CRYPT off)",
)
def test_encrypted_repository_round_trip(lab: Lab) -> None:
    key = b"correct horse battery staple"
    with lab.agent("a") as agent:
        agent.create("secret", "1G", template="pulse", key=key)
        agent.up("secret", key=key)
        agent.down("secret")
        with pytest.raises(AgentRefused):
            agent.up("secret", key=b"wrong key")
        agent.delete("secret", confirm="secret")
        log = (lab.host("a").plan.state_dir / "agent.log").read_bytes()
        assert key not in log


@pytest.mark.faults
@pytest.mark.skipif(dm_crypt_available(), reason="dm-crypt exists here: the round trip runs")
def test_encryption_without_dm_crypt_is_refused_and_changes_nothing(lab: Lab) -> None:
    key = b"correct horse battery staple"
    with lab.agent("a") as agent:
        with pytest.raises(AgentRefused) as err:
            agent.create("secret", "1G", key=key)
        assert err.value.status == 501 and "dm-crypt" in err.value.message
        assert "secret" not in [r.name for r in agent.repositories()]
    log = (lab.host("a").plan.state_dir / "agent.log").read_bytes()
    assert key not in log


def test_agent_log_is_structured(lab: Lab) -> None:
    lines = (lab.host("a").plan.state_dir / "agent.log").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(e["msg"] == "agent serving" and e["machine"] == "host-a" for e in events)


def test_a_heartbeat_is_one_call_answered_304_while_nothing_changed(lab: Lab) -> None:
    with lab.agent("a") as agent:
        beat = agent.heartbeat()
        assert beat.health.machine == "host-a"
        listed = {r.name for r in agent.repositories()}
        assert {r.name for r in beat.repositories} == listed
        # Asked again with its ETag, the agent sends no body while nothing changed (a
        # repository's app writing may change what it reports: ask a few times).
        answers = []
        for _ in range(5):
            first = agent._http.get("/v1/heartbeat")
            again = agent._http.get(
                "/v1/heartbeat", headers={"If-None-Match": first.headers["ETag"]}
            )
            answers.append(again.status_code)
            if again.status_code == 304:
                assert again.content == b""
                break
            assert again.headers["ETag"] != first.headers["ETag"]
        assert 304 in answers, answers
        stale = agent._http.get("/v1/heartbeat", headers={"If-None-Match": '"stale"'})
        assert stale.status_code == 200 and stale.json()["health"]["machine"] == "host-a"
