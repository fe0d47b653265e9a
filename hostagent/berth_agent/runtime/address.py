"""A repository's own address: where its service answers on whichever machine it runs.

The address lives in the container itself, on a macvlan network of the repository's
dockerd over the machine's uplink (the agent's `uplink`), not behind docker-proxy on the
machine's address: a client's TCP connection ends in the container's own socket, which
CRIU checkpoints and restores (tcp-established) with the rest of the process. Docker
stores the network and the container's fixed address in the repository, so on the target
it recreates the interface, with the address, before CRIU restores the sockets into it;
on the source the interface goes with the container when the checkpoint stops it. A
gratuitous ARP from the target then points the segment at its MAC address.
"""

from __future__ import annotations

import logging
from typing import Any

import docker
from docker.models.containers import Container

from berth_agent.errors import Conflict
from berth_agent.runtime import garp
from berth_common.agent_api.services import RepositoryAddress

log = logging.getLogger("berth.agent.address")
ADDRESS_NETWORK = "berth-address"


def ensure_address_network(
    client: docker.DockerClient, address: RepositoryAddress, uplink: str
) -> None:
    """The macvlan network holding the repository's address; made once, then moves with
    the repository (its parent is named by the uplink: every machine's must be)."""
    if client.networks.list(names=[ADDRESS_NETWORK]):
        return
    pool = docker.types.IPAMPool(
        subnet=str(address.network),
        gateway=str(address.gateway_address),
        iprange=f"{address.ip}/32",  # docker never hands out another address of the segment
    )
    try:
        client.networks.create(
            ADDRESS_NETWORK,
            driver="macvlan",
            options={"parent": uplink, "macvlan_mode": "bridge"},
            ipam=docker.types.IPAMConfig(pool_configs=[pool]),
        )
    except docker.errors.APIError as err:
        raise Conflict(
            f"the network for address {address.cidr} on {uplink!r} could not be made: "
            f"{err.explanation or err}"
        ) from err
    log.info("address network made", extra={"address": address.cidr, "uplink": uplink})


def attach(client: docker.DockerClient, container: Container, address: RepositoryAddress) -> None:
    """Give a new container the repository's address (kept by docker across restarts,
    checkpoints and moves)."""
    network = client.networks.get(ADDRESS_NETWORK)
    network.connect(container, ipv4_address=str(address.ip))


def announce(container: Container, address: RepositoryAddress) -> None:
    """Gratuitous ARP for the address, from the container's interface that holds it (sent
    in the background: runtime/garp.py). container: as just read (containers.get)."""
    pid = int(container.attrs["State"]["Pid"])
    endpoint = (container.attrs["NetworkSettings"]["Networks"] or {}).get(ADDRESS_NETWORK)
    if not pid or not endpoint:
        log.warning("address not announced: not attached", extra={"address": address.cidr})
        return
    garp.announce(pid, endpoint["MacAddress"], str(address.ip))


def address_of(attrs: dict[str, Any]) -> str | None:
    """The repository address a container holds (its `docker inspect`), if any."""
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    endpoint = networks.get(ADDRESS_NETWORK)
    return (endpoint or {}).get("IPAddress") or None
