"""A repository's network on a host, named and numbered from its GUID. (What it runs,
its services, is part of the agents' wire contract: berth_common.agent_api.services.)"""

from __future__ import annotations

import ipaddress
import zlib


def bridge_name(guid: str) -> str:
    """The Linux bridge of a repository's network (15 characters at most, like any link)."""
    return f"bb{guid.replace('-', '')[:12]}"


def repository_subnet(guid: str) -> ipaddress.IPv4Network:
    """The bridge subnet of a repository's network: stable per GUID, so it moves unchanged.

    Stability matters more than density: a checkpointed container is restored with the
    address it had, so its network must come back with the same subnet on every host.
    """
    index = zlib.crc32(guid.encode()) % (256 * 16)
    return ipaddress.IPv4Network(f"10.{200 + index // 256}.{index % 256}.0/24")
