"""Gratuitous ARP: telling a network segment which MAC address now holds an IPv4 address.

After a move the repository's address answers from another machine, behind another MAC
address. Clients (and the router) keep the old one in their neighbour tables until it
goes stale, sending into the void meanwhile; an unsolicited ARP request for the address
from its new holder updates every entry at once, and teaches the segment's switches the
new port. The frames are sent from inside the container's network namespace, by a
thread of the agent that enters it (no process to start inside the downtime).
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import logging
import socket
import struct
import threading
import time
from pathlib import Path

log = logging.getLogger("berth.agent.garp")
CLONE_NEWNET = 0x40000000
SIOCGIFHWADDR = 0x8927
BROADCAST = b"\xff" * 6
ETH_P_ARP = 0x0806
ARP_REQUEST = 1


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def garp_frame(mac: str, address: str) -> bytes:
    """One Ethernet frame: an ARP request for address, from address itself (sender and
    target IP equal: RFC 5227's announcement, which Linux, switches and routers take)."""
    sender = mac_bytes(mac)
    ip = ipaddress.IPv4Address(address).packed
    ethernet = BROADCAST + sender + ETH_P_ARP.to_bytes(2, "big")
    arp = (
        (1).to_bytes(2, "big")  # hardware: Ethernet
        + (0x0800).to_bytes(2, "big")  # protocol: IPv4
        + bytes([6, 4])
        + ARP_REQUEST.to_bytes(2, "big")
        + sender
        + ip
        + b"\x00" * 6
        + ip
    )
    return ethernet + arp


def _interface_with_mac(mac: str) -> str:
    """This thread's network namespace's interface with that MAC address."""
    wanted = mac_bytes(mac)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFHWADDR, request)
            if answer[18:24] == wanted:
                return name
    raise LookupError(f"no interface has MAC address {mac}")


def _announce_in_namespace(netns: Path, mac: str, address: str, count: int, every: float) -> None:
    """In a thread of its own: setns changes only the calling thread's namespace, and
    the thread ends with it. The outcome is logged: nothing waits for it."""
    try:
        with netns.open("rb") as ns:
            if ctypes.CDLL(None, use_errno=True).setns(ns.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {netns}")
        interface = _interface_with_mac(mac)
        frame = garp_frame(mac, address)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((interface, 0))
            for i in range(count):
                if i:
                    time.sleep(every)
                sock.send(frame)
    except (OSError, LookupError) as err:  # the segment learns it anyway, from its traffic
        log.warning("address not announced", extra={"address": address, "error": str(err)})
        return
    log.info("address announced", extra={"address": address, "interface": interface})


def announce(pid: int, mac: str, address: str, count: int = 3, every: float = 0.02) -> None:
    """Announce address from the interface with that MAC in pid's network namespace, in
    the background: the first frame leaves at once, and the restore that called this
    does not wait for the repeats (they would add their spacing to the downtime)."""
    threading.Thread(
        target=_announce_in_namespace,
        args=(Path(f"/proc/{pid}/ns/net"), mac, address, count, every),
        name="garp",
        daemon=True,
    ).start()
