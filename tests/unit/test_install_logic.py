"""Enrollment bundles and installation plans: pure logic, no host touched."""

from __future__ import annotations

import dataclasses
import io
import re
import tarfile
from pathlib import Path

import pytest

from berth_agent.config import AgentConfig
from berth_agent.install.plan import InstallRefused, plan_install
from berth_common.bundle import BundleError, HostBundle
from kubectl_berth.client import CLIError
from kubectl_berth.enroll import build_machine, issue_bundle, pki_init

pytestmark = pytest.mark.unit


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    pki_init(tmp_path / "pki")
    return tmp_path / "pki"


def test_a_bundle_round_trips_and_names_its_endpoint(pki: Path, tmp_path: Path) -> None:
    bundle = issue_bundle(pki, "host-c", "10.0.0.13", 7443)
    bundle.write(tmp_path / "b.tar")
    assert (tmp_path / "b.tar").stat().st_mode & 0o777 == 0o600
    read = HostBundle.read(tmp_path / "b.tar")
    assert read == bundle
    assert read.endpoint == "https://10.0.0.13:7443"
    machine = build_machine(read, capacity_bytes=10)
    assert machine["spec"] == {
        "endpoint": "https://10.0.0.13:7443",
        "caBundle": (pki / "ca.crt").read_text(),
        "capacityBytes": 10,
    }


def test_a_dns_address_is_certified_by_name(pki: Path) -> None:
    bundle = issue_bundle(pki, "host-c", "host-c.example.net", 7443)
    bundle.validate()
    assert bundle.endpoint == "https://host-c.example.net:7443"


def test_pki_init_never_replaces_a_ca(pki: Path) -> None:
    before = (pki / "ca.key").read_bytes()
    with pytest.raises(CLIError, match="already holds a CA"):
        pki_init(pki)
    assert (pki / "ca.key").read_bytes() == before


def test_a_bundle_for_another_address_or_key_is_refused(pki: Path) -> None:
    bundle = issue_bundle(pki, "host-c", "10.0.0.13", 7443)
    other = issue_bundle(pki, "host-d", "10.0.0.14", 7443)
    with pytest.raises(BundleError, match=re.escape("not valid for 10.0.0.99")):
        HostBundle(**{**vars(bundle), "address": "10.0.0.99"}).validate()
    with pytest.raises(BundleError, match="does not belong"):
        HostBundle(**{**vars(bundle), "key_pem": other.key_pem}).validate()


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_bundle_with_foreign_or_missing_entries_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=re.escape("unexpected entry '../etc/passwd'")):
        HostBundle.read(_tar(tmp_path / "evil.tar", {"../etc/passwd": b"x"}))
    with pytest.raises(BundleError, match="lacks"):
        HostBundle.read(_tar(tmp_path / "short.tar", {"name": b"host-c"}))
    with pytest.raises(BundleError, match="cannot read"):
        HostBundle.read(tmp_path / "absent.tar")


def test_install_plan_writes_the_key_private_and_points_the_unit_at_the_agent(
    pki: Path, tmp_path: Path
) -> None:
    bundle = issue_bundle(pki, "host-c", "10.0.0.13", 7444)
    plan = plan_install(bundle, Path("/etc/berth"), Path("/etc/systemd/system"),
                        Path("/opt/x/bin/berth-agent"), current=None)  # fmt: skip
    modes = {str(f.path): f.mode for f in plan.files}
    assert modes == {
        "/etc/berth/agent.yaml": 0o644,
        "/etc/berth/tls/ca.crt": 0o644,
        "/etc/berth/tls/agent.crt": 0o644,
        "/etc/berth/tls/agent.key": 0o600,
        "/etc/systemd/system/berth-agent.service": 0o644,
        "/etc/berth/tls/sessions-ca.crt": 0o644,
    }
    unit = next(f for f in plan.files if f.path.name == "berth-agent.service").content.decode()
    assert "ExecStart=/opt/x/bin/berth-agent --config /etc/berth/agent.yaml serve" in unit
    assert "KillMode=process" in unit  # an agent restart leaves repositories running
    assert plan.config.name == "host-c" and plan.config.port == 7444 and not plan.upgrade


def test_reinstalling_keeps_settings_and_refuses_another_machine(pki: Path) -> None:
    bundle = issue_bundle(pki, "host-c", "10.0.0.13", 7443)
    current = AgentConfig(name="host-c", data_dir=Path("/srv/berth"), listen="10.0.0.13")
    plan = plan_install(bundle, Path("/etc/berth"), Path("/s"), Path("/a"), current)
    assert plan.upgrade
    assert plan.config.data_dir == Path("/srv/berth") and plan.config.listen == "10.0.0.13"
    elsewhere = AgentConfig(name="host-b")
    with pytest.raises(InstallRefused, match="already machine 'host-b'"):
        plan_install(bundle, Path("/etc/berth"), Path("/s"), Path("/a"), elsewhere)
    forced = plan_install(bundle, Path("/etc/berth"), Path("/s"), Path("/a"), elsewhere, True)
    assert forced.config.name == "host-c" and not forced.upgrade


def test_the_bundle_brings_the_sessions_ca_and_an_older_one_keeps_the_hosts(
    pki: Path, tmp_path: Path
) -> None:
    bundle = issue_bundle(pki, "host-c", "10.0.0.13", 7443)
    assert bundle.sessions_ca_pem == (pki / "sessions-ca.crt").read_bytes()
    bundle.write(tmp_path / "b.tar")
    assert HostBundle.read(tmp_path / "b.tar").sessions_ca_pem == bundle.sessions_ca_pem
    sessions = Path("/etc/berth/tls/sessions-ca.crt")
    fresh = plan_install(bundle, Path("/etc/berth"), Path("/s"), Path("/a"), current=None)
    assert fresh.config.tls.session_ca == sessions
    assert [f.content for f in fresh.files if f.path == sessions] == [bundle.sessions_ca_pem]
    # A bundle made before sessions existed: the host's own setting stays.
    older = dataclasses.replace(bundle, sessions_ca_pem=None)
    kept = Path("/srv/sessions.crt")
    current = AgentConfig.model_validate({"name": "host-c", "tls": {"session_ca": str(kept)}})
    plan = plan_install(older, Path("/etc/berth"), Path("/s"), Path("/a"), current)
    assert plan.config.tls.session_ca == kept
    assert f"session_ca: {kept}" in plan.files[0].content.decode()
    assert not any(f.path == sessions for f in plan.files)
    none = plan_install(older, Path("/etc/berth"), Path("/s"), Path("/a"), current=None)
    assert none.config.tls.session_ca is None


def test_a_bundle_whose_sessions_ca_is_its_ca_is_refused(pki: Path) -> None:
    bundle = issue_bundle(pki, "host-c", "10.0.0.13", 7443)
    with pytest.raises(BundleError, match="CA of their own"):
        dataclasses.replace(bundle, sessions_ca_pem=bundle.ca_pem).validate()
