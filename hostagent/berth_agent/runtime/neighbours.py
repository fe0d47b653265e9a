"""Tell the host where a restored container is before anything has to ask by ARP.

While CRIU restores a container, docker already publishes its ports, but the container's
address does not answer ARP yet. A client that connects in that window (docker-proxy or
DNAT forwards it) leaves the host's neighbour entry INCOMPLETE, and the kernel only asks
again after its retransmit time of a second, so every packet to the container waits up
to that long after the restore returned. Measured on the lab: 0.5 to 0.7 s added to a
move's downtime whenever clients kept probing (bench/downtime_bench.py, `up.answer`).
Docker knows each endpoint's address and MAC, so the agent writes the entries itself.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import docker

from berth_common.process import CommandError, run

log = logging.getLogger("berth.agent.neighbours")


@dataclass(frozen=True)
class Endpoint:
    """A container's address on a bridge of its repository's dockerd."""

    address: str
    mac: str
    bridge: str


def endpoints_of(attrs: Mapping[str, Any], bridges: Mapping[str, str]) -> list[Endpoint]:
    """The IPv4 endpoints of one container (its `docker inspect`), on the networks named in
    `bridges` (network name -> Linux bridge)."""
    settings = attrs.get("NetworkSettings")
    networks = settings.get("Networks") if isinstance(settings, dict) else None
    found = []
    for network, bridge in bridges.items():
        endpoint = networks.get(network) if isinstance(networks, dict) else None
        if not isinstance(endpoint, dict):
            continue
        address, mac = endpoint.get("IPAddress"), endpoint.get("MacAddress")
        if address and mac:
            found.append(Endpoint(str(ipaddress.IPv4Address(address)), str(mac), bridge))
    return found


def replace_argv(endpoint: Endpoint) -> list[str]:
    # REACHABLE: used at once, and the kernel re-confirms it by itself when it ages.
    return [
        "ip", "-4", "neigh", "replace", endpoint.address,
        "lladdr", endpoint.mac, "dev", endpoint.bridge, "nud", "reachable",
    ]  # fmt: skip


def write_entries(client: docker.DockerClient, names: list[str], bridges: dict[str, str]) -> int:
    """Write the host's neighbour entries of the named containers; returns how many. A
    failure is logged, never raised: the restore it follows has succeeded, and without
    the entry the kernel still resolves the address by ARP, only later."""
    written = 0
    for name in names:
        try:
            for endpoint in endpoints_of(client.api.inspect_container(name), bridges):
                run(replace_argv(endpoint), timeout=5)
                written += 1
        except (docker.errors.APIError, CommandError, OSError, ValueError) as err:
            log.warning(
                "neighbour entries not written", extra={"container": name, "error": str(err)}
            )
    return written
