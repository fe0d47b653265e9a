"""A client that holds TCP connections open to a service through a move.

Each connection reads pulse's greeting, then sends a numbered line every `every` seconds
and waits for its echo, on the same connection for the whole run (`--seconds`, or until
SIGTERM): a connection that breaks is an error, and the client connects again (a
reconnect) and goes on. What it reports is what a user of the service lived through:
requests, errors, reconnects, and the longest wait for one answer. `python -m
berth_lab.holder ADDRESS PORT ...` runs it inside a lab host and prints the summary as
JSON.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

ANSWER_TIMEOUT = 30.0  # a wait this long is an error, not a slow answer


@dataclass
class ConnectionLog:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    longest_wait: float = 0.0
    longest_wait_ended: float = 0.0  # wall clock: when that answer came


def _connect(address: str, port: int) -> tuple[socket.socket, Any]:
    sock = socket.create_connection((address, port), timeout=5)
    sock.settimeout(ANSWER_TIMEOUT)
    reader = sock.makefile("rb")
    greeting = reader.readline()
    if not greeting.startswith(b"pulse"):
        raise OSError(f"unexpected greeting {greeting[:40]!r}")
    return sock, reader


def _hold(address: str, port: int, stop: threading.Event, every: float, log: ConnectionLog) -> None:
    sock, reader = _connect(address, port)
    n = 0
    while not stop.is_set():
        n += 1
        sent = time.monotonic()
        try:
            sock.sendall(f"{n}\n".encode())
            echo = reader.readline()
            if echo != f"{n}\n".encode():
                raise OSError(f"request {n} answered {echo[:40]!r}")
        except OSError as err:
            log.errors.append(f"{time.time():.3f} {err}")
            sock.close()
            while not stop.is_set():  # as a client would: connect again
                try:
                    sock, reader = _connect(address, port)
                    log.reconnects += 1
                    break
                except OSError:
                    time.sleep(0.05)
            continue
        waited = time.monotonic() - sent
        log.requests += 1
        if waited > log.longest_wait:
            log.longest_wait, log.longest_wait_ended = waited, time.time()
        time.sleep(max(0.0, sent + every - time.monotonic()))
    sock.close()


def hold(
    address: str, port: int, connections: int, stop: threading.Event, every: float = 0.01
) -> dict[str, Any]:
    """Hold `connections` connections until stop is set; the summary of all of them."""
    logs = [ConnectionLog() for _ in range(connections)]
    threads = [
        threading.Thread(target=_hold, args=(address, port, stop, every, log), daemon=True)
        for log in logs
    ]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(2 * ANSWER_TIMEOUT)
    worst = max(logs, key=lambda log: log.longest_wait)
    return {
        "address": f"{address}:{port}",
        "connections": connections,
        "requests": sum(log.requests for log in logs),
        "errors": sum(len(log.errors) for log in logs),
        "reconnects": sum(log.reconnects for log in logs),
        "longest_wait_s": round(worst.longest_wait, 3),
        "longest_wait_ended": worst.longest_wait_ended,
        "first_errors": [e for log in logs for e in log.errors][:5],
        "per_connection": [asdict(log) for log in logs] if connections <= 4 else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m berth_lab.holder", description=__doc__)
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument(
        "--seconds", type=float, help="how long; without it, until SIGTERM or SIGINT"
    )
    parser.add_argument("--every", type=float, default=0.01, help="seconds between requests")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.seconds is not None:
        threading.Timer(args.seconds, stop.set).start()
    result = hold(args.address, args.port, args.connections, stop, args.every)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
