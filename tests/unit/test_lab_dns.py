"""The lab's DNS configuration (checked by BIND's own named-checkconf and
named-checkzone), and the operator's reading of a DNS server's answers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from berth_lab.dns_service import ZONE, external_dns_argv, named_conf, zone_file
from berth_operator.dns_lookup import parse_server
from berth_operator.placement.dns_check import NameAnswer, check_records

pytestmark = pytest.mark.unit
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="


@pytest.mark.parametrize("updates", [True, False])
def test_named_accepts_the_labs_configuration_and_zone(tmp_path: Path, updates: bool) -> None:
    if shutil.which("named-checkconf") is None:
        pytest.fail("named-checkconf missing: bash hack/install-host.sh installs bind9")
    conf = tmp_path / "named.conf"
    conf.write_text(named_conf(tmp_path, "10.0.0.1", 5353, SECRET, updates))
    (tmp_path / f"{ZONE}.zone").write_text(zone_file("10.0.0.1"))
    subprocess.run(["named-checkconf", "-z", str(conf)], check=True, capture_output=True)
    text = conf.read_text()
    assert ('allow-update { key "berth-lab"; };' in text) is updates
    assert ("allow-update { none; };" in text) is not updates
    assert "recursion no;" in text


def test_external_dns_gets_its_secret_from_the_environment_not_its_argv() -> None:
    argv = external_dns_argv(Path("/x/external-dns"), Path("/k"), "10.0.0.1", 5353, 7979)
    assert "--provider=rfc2136" in argv and "--source=crd" in argv
    assert "--rfc2136-host=10.0.0.1" in argv and "--rfc2136-port=5353" in argv
    assert not any("tsig-secret=" in arg for arg in argv)


@pytest.mark.parametrize(
    ("server", "parsed"),
    [
        ("10.0.0.1", ("10.0.0.1", 53)),
        ("10.0.0.1:5353", ("10.0.0.1", 5353)),
        ("[fd00::1]:5353", ("fd00::1", 5353)),
        ("[fd00::1]", ("fd00::1", 53)),
        ("ns1.example.com", ("ns1.example.com", 53)),
    ],
)
def test_a_dns_server_is_an_address_and_an_optional_port(
    server: str, parsed: tuple[str, int]
) -> None:
    assert parse_server(server) == parsed


def test_every_name_must_answer_exactly_the_machine() -> None:
    right = NameAnswer("a.lab", ("10.0.0.2",))
    both = NameAnswer("b.lab", ("10.0.0.1", "10.0.0.2"))
    silent = NameAnswer("c.lab", None, "no answer from ns: timed out")
    assert check_records("ns", "10.0.0.2", [right], 0.5, 10).confirmed
    pending = check_records("ns", "10.0.0.2", [right, both, silent], 3, 10)
    assert not pending.confirmed and not pending.overdue and pending.ask_again_after == 1.0
    assert (
        "b.lab -> 10.0.0.1, 10.0.0.2" in pending.message and "c.lab: no answer" in pending.message
    )
    overdue = check_records("ns", "10.0.0.2", [both], 10, 10)
    assert overdue.overdue and overdue.ask_again_after == 10.0
    assert "external-dns" in overdue.message
    # No clock in the messages: a status is written again only when an answer changes.
    assert check_records("ns", "10.0.0.2", [both], 4, 10) == check_records(
        "ns", "10.0.0.2", [both], 7, 10
    )
