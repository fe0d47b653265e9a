"""DNS in the lab: a stand-in for external-dns and its provider, and a client that follows.

`LabDNS` answers A queries from the DNSEndpoint objects in the cluster (what external-dns
would publish), on the lab's bridge address, so a client on a lab host resolves a
placement's names as it would on a real network; `python -m berth_lab.dns serve ...` runs
it as a process of its own (the lab's, for as long as the lab is up). `follow` is that
client: it resolves a name, connects to the address on a port, and keeps doing so,
re-resolving when the TTL ends or a connection fails; `python -m berth_lab.dns follow ...`
runs it inside a host. Only what the lab needs of the protocol: one question, A records,
UDP.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import httpx

from berth_common.logs import setup_logging
from berth_lab.kubeconfig import Kubectl

log = logging.getLogger("berth.lab.dns")

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


# --- where the records come from -----------------------------------------------------------
class EndpointSource(Protocol):
    def dns_endpoints(self) -> list[dict[str, Any]] | None:
        """Every DNSEndpoint in the cluster; None when they could not be listed."""


class KubectlEndpoints:
    """Lists them with kubectl: works with any kubeconfig, also an exec plugin's."""

    def __init__(self, kubectl: Kubectl) -> None:
        self.kubectl = kubectl

    def dns_endpoints(self) -> list[dict[str, Any]] | None:
        listed = self.kubectl("get", "dnsendpoints", "-A", "-o", "json", check=False)
        if listed.returncode != 0:
            return None
        items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
        return items


class APIEndpoints:
    """Lists them over one kept-alive HTTPS connection, with a client certificate: a
    server that lives as long as the lab looks ten times a second, and a kubectl process
    each time would keep a lab left up for hours busy for nothing."""

    PATH = "/apis/externaldns.k8s.io/v1alpha1/dnsendpoints"

    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        tls = ssl.create_default_context(cafile=str(ca))
        tls.load_cert_chain(str(cert), str(key))
        # Loopback: an HTTP(S)_PROXY from the environment must not be used.
        self._http = httpx.Client(base_url=server, verify=tls, trust_env=False, timeout=5)

    def dns_endpoints(self) -> list[dict[str, Any]] | None:
        try:
            response = self._http.get(self.PATH)
        except httpx.HTTPError as err:  # the API server restarting
            log.debug("dnsendpoints not listed", extra={"error": str(err)})
            return None
        if response.status_code != 200:  # the CRD not there yet
            return None
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def close(self) -> None:
        self._http.close()


# --- the server ----------------------------------------------------------------------------
class LabDNS:
    """Serves the cluster's DNSEndpoint records on address:port until stopped."""

    def __init__(
        self, source: EndpointSource, address: str, port: int = PORT, every: float = 0.1
    ) -> None:
        self.source, self.address, self.port, self.every = source, address, port, every
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
        listed = self.source.dns_endpoints()
        if listed is not None:  # else: keep serving what was last seen
            self.records = records_of(listed)

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


def serve(source: APIEndpoints, address: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT."""
    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with LabDNS(source, address, port):
        log.info("dns serving", extra={"address": address, "port": port})
        stop.wait()
    source.close()
    log.info("dns stopped", extra={"address": address, "port": port})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m berth_lab.dns", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("follow", help="reach NAME:PORT through DNS for SECONDS; JSON out")
    cmd.add_argument("name")
    cmd.add_argument("--server", required=True, help="ADDRESS:PORT of the DNS server")
    cmd.add_argument("--port", type=int, required=True)
    cmd.add_argument("--seconds", type=float, required=True)
    server = sub.add_parser("serve", help="answer from the cluster's DNSEndpoints until stopped")
    server.add_argument("--api-server", required=True, help="the kube-apiserver's URL")
    for name in ("ca", "cert", "key"):
        server.add_argument(f"--{name}", type=Path, required=True, help=f"{name} PEM file")
    server.add_argument("--address", required=True, help="the address to answer on")
    server.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args(argv)
    if args.command == "serve":
        setup_logging("info", json_format=True)
        source = APIEndpoints(args.api_server, args.ca, args.cert, args.key)
        return serve(source, args.address, args.port)
    host, _, server_port = args.server.rpartition(":")
    result = follow(args.name, (host, int(server_port)), args.port, args.seconds)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
