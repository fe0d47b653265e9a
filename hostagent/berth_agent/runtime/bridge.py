"""Removing a repository's Linux bridge once its dockerd has stopped.

dockerd leaves the bridges of user-defined networks behind when it exits. After a move
the source would keep the repository's bridge, holding its subnet's gateway address,
for as long as the machine runs: one per repository that ever ran there. dockerd
creates the bridge again from its network store when the repository next starts here.
"""

from __future__ import annotations

import logging

from berth_agent.runtime.spec import bridge_name
from berth_common.process import run

log = logging.getLogger("berth.agent.bridge")


def remove_bridge(guid: str) -> bool:
    """Delete the repository's bridge if it exists; True if one was deleted. Only call it
    with the repository's dockerd stopped, or that dockerd loses its network."""
    name = bridge_name(guid)
    # `ip link show` is asked rather than /sys/class/net: sysfs shows the network
    # namespace it was mounted in, which need not be the agent's.
    if run(["ip", "-o", "link", "show", "dev", name], check=False, timeout=5).returncode:
        return False
    run(["ip", "link", "delete", "dev", name, "type", "bridge"], timeout=5)
    log.info("bridge removed", extra={"bridge": name, "guid": guid})
    return True
