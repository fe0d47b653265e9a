"""Pure pieces of the agent: names, sizes, service specs, pulse's heartbeat parsing."""

import pytest
from pydantic import ValidationError

from berth_agent.apps import pulse
from berth_agent.errors import InvalidRequest
from berth_agent.runtime.spec import (
    CHECKPOINT_LABEL,
    RepositoryServices,
    ServiceSpec,
    repository_subnet,
)
from berth_agent.store.naming import parse_size, validate_guid, validate_name

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
