"""A TCP prober of pulse: asks every address every `--every` seconds, one connection per
probe, and writes each answer's time and address as a line to `--out`.

    python bench/prober.py --port 18000 --every 0.02 --out answers.txt 10.0.0.11 10.0.0.12

downtime_bench.py runs it on a lab host of its own (host-c), so the prober's CPU and
network are not the moved repository's. Probes start at a fixed rate whether or not the
earlier ones got their answer: a probe that waits (a frozen listener, a dropped SYN)
never delays the next, so the longest gap between answers is the application's, to
within one interval. pulse's busybox `nc -ll -e` serves each connection in a process of
its own; a probe its short listen queue drops loses only its own answer (bench/README.md
has the measurement). Runs until SIGTERM or SIGINT. Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

ANSWER_PREFIX = b"pulse"  # how pulse's answer starts (berth_agent.apps.pulse.ANSWER)
PROBE_TIMEOUT_S = 1.0  # a probe gives up after this; later probes have started meanwhile


@dataclass(frozen=True)
class Answer:
    """pulse answered a probe of address at time (seconds since the epoch)."""

    time: float
    address: str


def pulse_answers(address: str, port: int, timeout: float = 0.2) -> bool:
    """One probe, blocking: connect and read pulse's answer."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(64).startswith(ANSWER_PREFIX)
    except OSError:
        return False


def longest_gap(answers: Iterable[Answer], since: float) -> float:
    """The longest time between two answers from any address, from since on."""
    times = sorted(a.time for a in answers if a.time >= since)
    return max((b - a for a, b in itertools.pairwise(times)), default=float("nan"))


def read_answers(path: Path) -> list[Answer]:
    """The answers a prober wrote to path (a last line cut short by a kill is left out)."""
    found = []
    for line in path.read_text().split("\n")[:-1]:
        stamp, _, address = line.partition(" ")
        found.append(Answer(float(stamp), address))
    return found


async def probe(address: str, port: int, out: TextIO) -> None:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port), PROBE_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return
    try:
        got = await asyncio.wait_for(reader.read(64), PROBE_TIMEOUT_S)
    except (OSError, TimeoutError):
        got = b""
    finally:
        writer.close()
    if got.startswith(ANSWER_PREFIX):
        out.write(f"{time.time():.6f} {address}\n")
        out.flush()  # a prober killed hard keeps what it saw


async def probe_until_stopped(addresses: list[str], port: int, every: float, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pending: set[asyncio.Task[None]] = set()
    tick = loop.time()
    while not stop.is_set():
        for address in addresses:
            task = asyncio.create_task(probe(address, port, out))
            pending.add(task)
            task.add_done_callback(pending.discard)
        # A fixed rate: the next round is due `every` after this one was, however long
        # starting it took.
        tick += every
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, tick - loop.time()))
    for task in list(pending):
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("addresses", nargs="+")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--every", type=float, default=0.02, help="seconds between probes")
    parser.add_argument("--out", type=Path, required=True, help="one line per answer")
    args = parser.parse_args(argv)
    with args.out.open("a") as out:
        asyncio.run(probe_until_stopped(args.addresses, args.port, args.every, out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
