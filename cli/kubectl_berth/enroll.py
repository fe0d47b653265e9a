"""Joining hosts: the berth CA (`kubectl berth pki init`) and a host's bundle plus its
Machine (`kubectl berth enroll`). The CA key stays where the admin keeps it."""

from __future__ import annotations

import ipaddress
import re
import tempfile
from pathlib import Path
from typing import Any

from berth_common.bundle import HostBundle
from berth_common.pki import METRICS_CN, METRICS_ORGANIZATION, CertFiles, create_ca, issue
from kubectl_berth.client import CLIError

OPERATOR_CN = "berth-operator"  # agents accept tokens signed by this name only
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def ca_files(directory: Path) -> CertFiles:
    return CertFiles(directory / "ca.crt", directory / "ca.key")


def operator_files(directory: Path) -> CertFiles:
    return CertFiles(directory / "operator.crt", directory / "operator.key")


def sessions_ca_files(directory: Path) -> CertFiles:
    return CertFiles(directory / "sessions-ca.crt", directory / "sessions-ca.key")


def pki_init(directory: Path) -> list[Path]:
    """A new CA and the operator's certificate. Never overwrites a CA: every agent
    trusts it, so replacing it by accident would cut them all off."""
    ca = ca_files(directory)
    if ca.key.exists() or ca.cert.exists():
        raise CLIError(f"{directory} already holds a CA ({ca.cert}); refusing to replace it")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    create_ca(ca, cn="berth CA")
    operator = issue(ca, operator_files(directory), OPERATOR_CN, org="berth")
    # A CA of its own for people's sessions (kubectl berth logs/exec): agents trust it on
    # their session routes only, so its certificates never act as the operator's.
    sessions = create_ca(sessions_ca_files(directory), cn="berth sessions CA")
    return [ca.cert, ca.key, operator.cert, operator.key, sessions.cert, sessions.key]


def metrics_files(directory: Path) -> CertFiles:
    return CertFiles(directory / "metrics.crt", directory / "metrics.key")


def pki_metrics(directory: Path) -> list[Path]:
    """Prometheus's client certificate: agents let it read /metrics and /healthz only.
    A new one each time (the old one stays valid until it expires)."""
    ca = ca_files(directory)
    if not ca.key.exists():
        raise CLIError(f"no CA in {directory} (ca.key): run kubectl berth pki init {directory}")
    made = issue(ca, metrics_files(directory), METRICS_CN, org=METRICS_ORGANIZATION)
    return [made.cert, made.key]


def check_machine_name(name: str) -> None:
    if len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        raise CLIError(f"invalid machine name {name!r}: lowercase DNS name, e.g. host-c")
    # A host's certificate is named after its machine: never the operator's or Prometheus's.
    if name in (OPERATOR_CN, METRICS_CN):
        raise CLIError(f"invalid machine name {name!r}: reserved for berth's own certificates")


def check_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        if len(address) <= 253 and DNS_SUBDOMAIN.match(address):
            return address
    raise CLIError(f"invalid address {address!r}: an IP address or a DNS name")


def issue_bundle(
    pki_dir: Path, name: str, address: str, port: int, dns: tuple[str, ...] = ()
) -> HostBundle:
    """A certificate for the host's agent (server for the operator and peers, client
    towards peers), naming its address, signed by the CA in pki_dir."""
    check_machine_name(name)
    address = check_address(address)
    if not 1 <= port <= 65535:
        raise CLIError(f"invalid port {port}")
    ca, sessions = ca_files(pki_dir), sessions_ca_files(pki_dir)
    if not ca.key.exists():
        raise CLIError(f"no CA in {pki_dir} (ca.key): run kubectl berth pki init {pki_dir}")
    ip: tuple[str, ...] = ()
    names = (name, *dns)
    try:
        ip = (str(ipaddress.ip_address(address)),)
    except ValueError:
        names = (name, address, *dns)
    with tempfile.TemporaryDirectory(prefix="berth-enroll-") as tmp:
        leaf = issue(ca, CertFiles(Path(tmp) / "agent.crt", Path(tmp) / "agent.key"), name,
                     org="berth", dns=tuple(dict.fromkeys(names)), ips=ip)  # fmt: skip
        bundle = HostBundle(
            name=name,
            address=address,
            port=port,
            ca_pem=ca.cert.read_bytes(),
            cert_pem=leaf.cert.read_bytes(),
            key_pem=leaf.key.read_bytes(),
            sessions_ca_pem=sessions.cert.read_bytes() if sessions.cert.exists() else None,
        )
    bundle.validate()
    return bundle


def build_machine(bundle: HostBundle, capacity_bytes: int | None = None) -> dict[str, Any]:
    """The Machine the operator reaches the agent by."""
    spec: dict[str, Any] = {"endpoint": bundle.endpoint, "caBundle": bundle.ca_pem.decode()}
    if capacity_bytes is not None:
        spec["capacityBytes"] = capacity_bytes
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "Machine",
        "metadata": {"name": bundle.name},
        "spec": spec,
    }
