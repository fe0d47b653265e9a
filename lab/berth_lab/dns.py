"""DNS in the lab: a stand-in for external-dns and its provider, and a client that follows.

`LabDNS` answers A queries from the DNSEndpoint objects in the cluster (what external-dns
would publish), on the lab's bridge address, so a client on a lab host resolves a
placement's names as it would on a real network. `follow` is that client: it resolves a
name, connects to the address on a port, and keeps doing so, re-resolving when the TTL
ends or a connection fails; `python -m berth_lab.dns follow ...` runs it inside a host.
Only what the lab needs of the protocol: one question, A records, UDP.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from berth_lab.kubeconfig import Kubectl

PORT = 5353  # not 53: nothing in the lab should look like the host's own resolver
TYPE_A, CLASS_IN = 1, 1
Records = dict[str, tuple[list[str], int]]  # name -> (IPv4 addresses, TTL)


# --- the wire format ---------------------------------------------------------------------
def _name(name: str) -> bytes:
    labels = name.rstrip(".").split(".")
    return b"".join(bytes([len(label)]) + label.encode() for label in labels) + b"\0"


def encode_query(name: str, query_id: int) -> bytes:
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)  # recursion desired
    return header + _name(name) + struct.pack("!HH", TYPE_A, CLASS_IN)


def _question(packet: bytes) -> tuple[str, int]:
    """The queried name and where the question ends."""
    labels, at = [], 12
    while packet[at]:
        length = packet[at]
        labels.append(packet[at + 1 : at + 1 + length].decode())
        at += 1 + length
    return ".".join(labels).lower(), at + 1 + 4


def encode_answer(query: bytes, records: Records) -> bytes:
    (query_id,) = struct.unpack("!H", query[:2])
    name, end = _question(query)
    addresses, ttl = records.get(name, ([], 0))
    flags = 0x8180 if addresses else 0x8183  # NOERROR, or NXDOMAIN
    header = struct.pack("!HHHHHH", query_id, flags, 1, len(addresses), 0, 0)
    answers = b"".join(
        struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, ttl, 4) + socket.inet_aton(a)
        for a in addresses
    )
    return header + query[12:end] + answers


def decode_answer(packet: bytes) -> tuple[list[str], int]:
    """The A records of a response and their smallest TTL ([] for NXDOMAIN)."""
    _, flags, _, count, _, _ = struct.unpack("!HHHHHH", packet[:12])
    if flags & 0xF:
        return [], 0
    _, at = _question(packet)
    addresses, ttls = [], []
    for _ in range(count):
        _, rtype, _, ttl, length = struct.unpack("!HHHIH", packet[at : at + 12])
        if rtype == TYPE_A:
            addresses.append(socket.inet_ntoa(packet[at + 12 : at + 12 + length]))
            ttls.append(ttl)
        at += 12 + length
    return addresses, min(ttls, default=0)


def records_of(dns_endpoints: list[dict[str, Any]]) -> Records:
    """What external-dns would publish: every A record of every DNSEndpoint."""
    found: Records = {}
    for obj in dns_endpoints:
        for endpoint in (obj.get("spec") or {}).get("endpoints") or []:
            if endpoint.get("recordType", "A") == "A":
                found[endpoint["dnsName"].lower()] = (
                    list(endpoint.get("targets", [])),
                    int(endpoint.get("recordTTL", 0)),
                )
    return found


# --- the server ----------------------------------------------------------------------------
class LabDNS:
    """Serves the cluster's DNSEndpoint records on address:port until stopped."""

    def __init__(self, kubectl: Kubectl, address: str, port: int = PORT, every: float = 0.1):
        self.kubectl, self.address, self.port, self.every = kubectl, address, port, every
        self.records: Records = {}
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._threads: list[threading.Thread] = []

    def start(self) -> LabDNS:
        self._sock.bind((self.address, self.port))
        self._sock.settimeout(0.2)
        self._refresh()
        for work in (self._serve, self._watch):
            thread = threading.Thread(target=work, daemon=True, name=f"labdns-{work.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._sock.close()

    def __enter__(self) -> LabDNS:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _refresh(self) -> None:
        listed = self.kubectl("get", "dnsendpoints", "-A", "-o", "json", check=False)
        if listed.returncode == 0:
            self.records = records_of(json.loads(listed.stdout)["items"])

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self._refresh()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self._sock.recvfrom(512)
                self._sock.sendto(encode_answer(query, self.records), peer)
            except TimeoutError:
                continue
            except (OSError, IndexError, struct.error, UnicodeDecodeError):
                continue  # a malformed query gets no answer


# --- the client ----------------------------------------------------------------------------
def resolve(name: str, server: tuple[str, int], timeout: float = 0.2) -> tuple[list[str], int]:
    query_id = random.randrange(1 << 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(encode_query(name, query_id), server)
        return decode_answer(sock.recv(512))


def _answers(address: str, port: int, expect: bytes) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.1) as conn:
            conn.settimeout(0.25)
            return conn.recv(64).startswith(expect)
    except OSError:
        return False


def follow(
    name: str, server: tuple[str, int], port: int, seconds: float, every: float = 0.05
) -> dict[str, Any]:
    """Reach name:port every `every` seconds for `seconds`, as a client that knows only
    the name would; the addresses it reached, in order, and the longest gap."""
    deadline = time.monotonic() + seconds
    cached: list[str] = []
    expires = 0.0
    reached: list[tuple[float, str]] = []
    while time.monotonic() < deadline:
        now = time.monotonic()
        if not cached or now >= expires:
            try:
                cached, ttl = resolve(name, server)
                expires = now + ttl
            except OSError:
                cached = []
        if cached and _answers(cached[0], port, b"pulse"):
            reached.append((time.time(), cached[0]))
        else:
            cached = []  # as clients do: a failed connection asks the name again
        time.sleep(every)
    times = [t for t, _ in reached]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    order = [a for i, (_, a) in enumerate(reached) if i == 0 or reached[i - 1][1] != a]
    return {
        "name": name,
        "answers": len(reached),
        "addresses": order,
        "longest_gap_s": round(max(gaps, default=float("nan")), 3),
        "first": reached[0][0] if reached else None,
        "last": reached[-1][0] if reached else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m berth_lab.dns", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("follow", help="reach NAME:PORT through DNS for SECONDS; JSON out")
    cmd.add_argument("name")
    cmd.add_argument("--server", required=True, help="ADDRESS:PORT of the DNS server")
    cmd.add_argument("--port", type=int, required=True)
    cmd.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    host, _, server_port = args.server.rpartition(":")
    result = follow(args.name, (host, int(server_port)), args.port, args.seconds)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
