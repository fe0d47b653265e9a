"""Pure planning of a lab: names, addresses and paths, with no side effects."""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT = Path("/var/lib/berth-lab")
# Paths every host sees at the same place, backed by that host's own directories.
CANONICAL_DATA_DIR = Path("/var/lib/berth")
# Per-host directories: runtime state, containerd's shim sockets, the agent's config.
CANONICAL_PRIVATE_DIRS = (Path("/run/berth"), Path("/run/containerd"), Path("/etc/berth"))
AGENT_PORT = 7443
DEFAULT_LAB = "lab"
DEMO_LAB = "demo"  # the demo's own, so that it never tears down a lab someone brought up
MAX_HOSTS = 26
# Set on every process a lab starts (children inherit it): names the lab's state dir, so
# `Lab.down()` and the leftover check find its processes once its namespaces are gone.
OWNER_ENV = "BERTH_LAB_DIR"

# How long each host has been up, beyond the machine itself: its clocks CLOCK_MONOTONIC
# and CLOCK_BOOTTIME run this many days ahead (a time namespace), as on real machines
# booted at different times, so a process moved between hosts meets another uptime.
# host-a has been up longest, so a move a -> b meets a clock days behind.
UPTIME_DAYS = (9, 2, 5)
_LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,5}$")
_RATE = re.compile(r"^[1-9][0-9]*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$")


class PlanError(ValueError):
    """The requested lab cannot be built as asked."""


@dataclass(frozen=True)
class HostPlan:
    name: str  # host-a
    netns: str  # berth-<lab>-a
    veth_root: str  # bl-<lab>-a, the bridge side
    address: ipaddress.IPv4Address
    state_dir: Path
    uptime_offset_s: int = 0  # its clocks' lead over the machine's (see UPTIME_DAYS)

    @property
    def datastore_image(self) -> Path:
        return self.state_dir / "datastore.img"

    @property
    def datastore_mount(self) -> Path:
        return self.state_dir / "datastore"

    @property
    def tmp_dir(self) -> Path:
        """The TMPDIR of the host's agent and all below it (dockerd, containerd): Docker's
        restore leaves a copy of each checkpoint in a temporary directory for good, which
        then goes with the lab instead of staying in the machine's /tmp."""
        return self.state_dir / "tmp"

    def private_dir(self, canonical: Path) -> Path:
        """Where this host's own copy of a canonical directory lives, seen from outside."""
        return self.state_dir / "private" / str(canonical).strip("/").replace("/", "_")


@dataclass(frozen=True)
class LabPlan:
    name: str
    network: ipaddress.IPv4Network
    bridge: str
    bridge_address: ipaddress.IPv4Address
    hosts: tuple[HostPlan, ...]
    bandwidth: str | None
    datastore_size: str
    state_dir: Path

    @property
    def kube_dir(self) -> Path:
        """The lab's kube-apiserver and etcd: state, logs, pid files, admin kubeconfig."""
        return self.state_dir / "kube"

    @property
    def cluster_dir(self) -> Path:
        """berth on that API server: the operator's kubeconfig, certificates, log, pid."""
        return self.state_dir / "cluster"

    @property
    def dns_dir(self) -> Path:
        """The lab's DNS (named and external-dns): configuration, zone, logs, pid files."""
        return self.state_dir / "dns"

    @property
    def monitoring_dir(self) -> Path:
        """The lab's Prometheus: its configuration, data, log and pid file."""
        return self.state_dir / "monitoring"

    @property
    def gitops_dir(self) -> Path:
        """The lab's git server and Flux's controllers: repositories, logs, pid files."""
        return self.state_dir / "gitops"

    def owner_env(self) -> dict[str, str]:
        """The variable that marks a process as this lab's (see OWNER_ENV)."""
        return {OWNER_ENV: str(self.state_dir)}

    def host(self, name: str) -> HostPlan:
        for host in self.hosts:
            if name in (host.name, host.name.removeprefix("host-")):
                return host
        raise PlanError(
            f"no host {name!r} in lab {self.name!r}; hosts: "
            + ", ".join(h.name for h in self.hosts)
        )


def lab_network(name: str) -> ipaddress.IPv4Network:
    """A /24 per lab name, stable across runs, so two labs can coexist."""
    third = 20 + zlib.crc32(name.encode()) % 200
    return ipaddress.IPv4Network(f"10.251.{third}.0/24")


def validate_rate(rate: str) -> str:
    if not _RATE.match(rate):
        raise PlanError(f"bandwidth {rate!r} is not a tc rate such as 1gbit or 500mbit")
    return rate


def plan_lab(
    name: str = DEFAULT_LAB,
    hosts: int = 2,
    bandwidth: str | None = None,
    datastore_size: str = "20G",
    state_root: Path = STATE_ROOT,
) -> LabPlan:
    if not _LAB_NAME.match(name):
        raise PlanError(f"lab name {name!r}: 1-6 lowercase letters or digits, starting a letter")
    if not 1 <= hosts <= MAX_HOSTS:
        raise PlanError(f"hosts must be between 1 and {MAX_HOSTS}, not {hosts}")
    if bandwidth is not None:
        validate_rate(bandwidth)
    if not re.match(r"^[1-9][0-9]*[MG]$", datastore_size):
        raise PlanError(f"datastore size {datastore_size!r}: a number followed by M or G")
    network = lab_network(name)
    addresses = list(network.hosts())
    state_dir = state_root / name
    host_plans = tuple(
        HostPlan(
            name=f"host-{letter}",
            netns=f"berth-{name}-{letter}",
            veth_root=f"bl-{name}-{letter}",
            address=addresses[10 + i],
            state_dir=state_dir / "hosts" / f"host-{letter}",
            uptime_offset_s=86400 * (UPTIME_DAYS[i] if i < len(UPTIME_DAYS) else i + 1),
        )
        for i, letter in enumerate("abcdefghijklmnopqrstuvwxyz"[:hosts])
    )
    return LabPlan(
        name=name,
        network=network,
        bridge=f"blbr-{name}",
        bridge_address=addresses[0],
        hosts=host_plans,
        bandwidth=bandwidth,
        datastore_size=datastore_size,
        state_dir=state_dir,
    )
