"""A DNS client for the lab: what a client that knows only a name sees.

`lookup` and `resolve` ask one server (the lab's named, dns_service.py) as a stub
resolver would; `follow` resolves a name, connects to the address on a port, and keeps
doing so, re-resolving when the TTL ends or a connection fails; `python -m
berth_lab.dns follow ...` runs it inside a lab host.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from berth_common.dns_query import NotAnswered, ask


def lookup(
    name: str, server: tuple[str, int], record_type: str = "A", timeout: float = 0.2
) -> list[str] | None:
    """The values of name's records of that type ([] if it has none, or does not
    exist); None when the server does not answer or refuses."""
    answer = ask(name, server[0], server[1], record_type, timeout)
    return None if isinstance(answer, NotAnswered) else list(answer.values)


def resolve(name: str, server: tuple[str, int], timeout: float = 0.2) -> tuple[list[str], int]:
    """name's IPv4 addresses and their TTL; OSError when the server does not answer."""
    answer = ask(name, server[0], server[1], "A", timeout)
    if isinstance(answer, NotAnswered):
        raise OSError(answer.why)
    return list(answer.values), answer.ttl


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
