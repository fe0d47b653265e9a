"""Pure pieces of the agent: names, sizes, service specs, pulse's heartbeat parsing,
neighbour entries."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from berth_agent.apps import pulse
from berth_agent.checkpoint.criu import criu_log_excerpt
from berth_agent.errors import InvalidRequest
from berth_agent.runtime import neighbours
from berth_agent.runtime.services import published_ports
from berth_agent.runtime.spec import bridge_name, repository_subnet
from berth_agent.server.app import describe_invalid
from berth_agent.store.naming import parse_size, validate_guid, validate_name
from berth_common.agent_api.models import PublishedPort
from berth_common.agent_api.services import CHECKPOINT_LABEL, RepositoryServices, ServiceSpec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["web", "a", "my-app-2", "x" * 63])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a/b", "..", "a.b", "x" * 64, "a b"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid"):
        validate_name(name)


def test_sizes() -> None:
    assert parse_size("256M") == 256 * 2**20
    assert parse_size("2G") == 2 * 2**30
    for bad in ("2", "2g", "0G", "2.5G", "-1G", "255M", "17T"):
        with pytest.raises(InvalidRequest):
            parse_size(bad)


def test_guid_must_be_canonical() -> None:
    guid = "6f1c2a0e-7a4b-4c1e-9d2f-0b1e2c3d4e5f"
    assert validate_guid(guid) == guid
    with pytest.raises(InvalidRequest):
        validate_guid(guid.upper())


def test_checkpoint_flag_sets_rediacc_label() -> None:
    spec = ServiceSpec(name="db", image="x", checkpoint=True)
    assert spec.container_labels()[CHECKPOINT_LABEL] == "true"
    assert CHECKPOINT_LABEL not in ServiceSpec(name="db", image="x").container_labels()


def test_services_must_have_unique_names_and_known_fields() -> None:
    with pytest.raises(ValidationError, match="unique"):
        RepositoryServices(services=[ServiceSpec(name="a", image="x")] * 2)
    with pytest.raises(ValidationError):
        RepositoryServices.model_validate({"services": [{"name": "a", "image": "x", "oops": 1}]})


def test_repository_subnet_is_stable_and_private() -> None:
    guid = "6f1c2a0e-7a4b-4c1e-9d2f-0b1e2c3d4e5f"
    assert repository_subnet(guid) == repository_subnet(guid)
    assert repository_subnet(guid).prefixlen == 24
    assert str(repository_subnet(guid)).startswith("10.2")


def test_pulse_beats_parse_docker_timestamps() -> None:
    lines = [
        "2026-11-28T05:45:15.123456789Z memory counter=6 time=2026-11-28T05:45:15Z",
        "2026-11-28T05:45:16.223456789Z memory counter=7 time=2026-11-28T05:45:16Z",
        "2026-11-28T05:45:16.3Z something else",
    ]
    beats = pulse.beats(lines)
    assert [c for _, c in beats] == [6, 7]
    assert (beats[1][0] - beats[0][0]).total_seconds() == pytest.approx(1.1)


# --- neighbour entries written after a restore ------------------------------------------
def test_a_restored_containers_endpoints_come_from_its_inspect() -> None:
    attrs = {
        "NetworkSettings": {
            "Networks": {
                "berth": {"IPAddress": "10.203.144.2", "MacAddress": "02:42:0a:cb:90:02"},
                "other": {"IPAddress": "172.17.0.2", "MacAddress": "02:42:ac:11:00:02"},
                "none": {"IPAddress": "", "MacAddress": ""},
            }
        }
    }
    found = neighbours.endpoints_of(attrs, {"berth": "bb05dc50f9f17b", "none": "x"})
    assert found == [neighbours.Endpoint("10.203.144.2", "02:42:0a:cb:90:02", "bb05dc50f9f17b")]
    assert neighbours.replace_argv(found[0]) == [
        "ip", "-4", "neigh", "replace", "10.203.144.2", "lladdr", "02:42:0a:cb:90:02",
        "dev", "bb05dc50f9f17b", "nud", "reachable",
    ]  # fmt: skip


def test_a_container_without_networks_has_no_endpoints() -> None:
    assert neighbours.endpoints_of({}, {"berth": "bb0"}) == []
    assert neighbours.endpoints_of({"NetworkSettings": {"Networks": None}}, {"berth": "bb0"}) == []
    with pytest.raises(ValueError):
        neighbours.endpoints_of(
            {"NetworkSettings": {"Networks": {"berth": {"IPAddress": "x", "MacAddress": "m"}}}},
            {"berth": "bb0"},
        )


def test_the_bridge_name_fits_a_link_name() -> None:
    name = bridge_name("05dc50f9-f17b-40fd-9175-e253ed9a3499")
    assert name == "bb05dc50f9f17b" and len(name) <= 15


def test_a_refused_request_never_echoes_its_input() -> None:
    secret = "c2VjcmV0LWx1a3Mta2V5"
    errors = [
        {"loc": ("body", "name"), "msg": "Field required", "input": {"key": secret}},
        {"loc": ("body", "key"), "msg": "Input should be a valid string", "input": [secret]},
    ]
    message = describe_invalid(errors)
    assert message == "name: Field required; key: Input should be a valid string"
    assert secret not in message


def test_published_ports_are_what_a_client_outside_reaches() -> None:
    attrs = {
        "NetworkSettings": {
            "Ports": {
                "8080/tcp": [
                    {"HostIp": "0.0.0.0", "HostPort": "18000"},
                    {"HostIp": "::", "HostPort": "18000"},
                ],
                "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
                "9000/tcp": None,  # exposed, not published
                "9100/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9100"}],  # host-local only
            }
        }
    }
    assert published_ports(attrs) == [  # by host port
        PublishedPort(container=53, protocol="udp", host=5353),
        PublishedPort(container=8080, protocol="tcp", host=18000),
    ]
    assert published_ports({}) == [] and published_ports({"NetworkSettings": None}) == []


def test_a_failed_dump_reports_criu_s_own_error_lines(tmp_path: Path) -> None:
    log = tmp_path / "criu-dump.log"
    log.write_text(
        "(00.001) Dumping task 42\n"
        "(00.120) Error (criu/sk-inet.c:199): inet: Can't dump a connecting socket\n"
        "(00.121) Dumping FAILED.\n"
    )
    message = f"criu failed: type NOTIFY errno 0 path= {log}: unknown"
    assert criu_log_excerpt(message) == (
        "; criu: Error (criu/sk-inet.c:199): inet: Can't dump a connecting socket | Dumping FAILED."
    )
    assert criu_log_excerpt("criu failed: type NOTIFY errno 0") == ""
    assert criu_log_excerpt(f"path= {tmp_path / 'gone.log'}: unknown") == ""
