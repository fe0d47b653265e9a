"""Clients that record every write a database acknowledged, for the tests and benchmarks
that move databases under load: an INCR Redis answered, an INSERT PostgreSQL committed.

Each write is recorded only once the server has answered it, one line per write
(`N EPOCH`), flushed at once, so the record survives the client. When the connection
breaks, the client connects again, to whichever of the given addresses answers first
(the repository's old machine and its new one), and goes on; the write in flight when it
broke is unknown (it may or may not have happened) and is not recorded.

    python -m berth_lab.writers redis --address 10.0.0.1 --address 10.0.0.2 --out acks
    python -m berth_lab.writers postgres --address 10.0.0.1 --out acks --run r1

Each run writes under its own name (--run, default random): Redis counts in the key
`berth:acked:RUN`, PostgreSQL's rows carry it. It runs until SIGTERM or --seconds, then
prints a summary as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import itertools
import json
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Protocol

CONNECT_TIMEOUT = 1.0  # seconds; an address that does not answer is passed over
# seconds; an fsync on a busy disk may take long, and a frozen server answers once it
# resumes (or resets the connection once it is gone): neither is a failure of the client.
ANSWER_TIMEOUT = 10.0
RETRY_PAUSE = 0.02  # seconds between attempts while no address answers
REDIS_KEY = "berth:acked:{run}"
POSTGRES_TABLE = "berth_acked"


class Database(enum.StrEnum):
    """The databases berth's templates install, and these clients write to."""

    REDIS = "redis"
    POSTGRES = "postgres"

    @property
    def port(self) -> int:
        return 6379 if self is Database.REDIS else 5432


class Refused(Exception):
    """The server answered the write with an error that no reconnection mends (a bad
    query, a broken constraint): the writer stops rather than spin."""


@dataclass(frozen=True)
class Ack:
    n: int  # what the write was: INCR's answer, the row's id
    at: float  # epoch seconds when the answer arrived


def read_acks(text: str) -> list[Ack]:
    acks = []
    for line in text.splitlines():
        n, at = line.split()
        acks.append(Ack(int(n), float(at)))
    return acks


def longest_gap(acks: Sequence[Ack]) -> float:
    """The longest time between two acknowledged writes in a row: what a client saw of
    the move."""
    return max((b.at - a.at for a, b in itertools.pairwise(acks)), default=0.0)


class Connection(Protocol):
    def write(self, n: int) -> int:
        """Make write n; the value that identifies it once acknowledged."""
        ...

    def close(self) -> None: ...


@dataclass
class Outcome:
    acked: int = 0
    last: int | None = None
    reconnects: int = 0
    failures: int = 0  # failed writes and connection attempts
    refused: str | None = None  # why the writer stopped early
    errors: list[str] = field(default_factory=list)  # the first and the last few


class RedisIncr:
    """INCR on one key over RESP, Redis's protocol (no library needed for one command)."""

    def __init__(self, address: str, port: int, run: str) -> None:
        self.sock = socket.create_connection((address, port), timeout=CONNECT_TIMEOUT)
        self.sock.settimeout(ANSWER_TIMEOUT)
        self.reader = self.sock.makefile("rb")
        self.key = REDIS_KEY.format(run=run).encode()

    def write(self, n: int) -> int:
        key = self.key
        self.sock.sendall(b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key))
        line = self.reader.readline()
        if line.startswith(b"-") and not line.startswith((b"-LOADING", b"-BUSY")):
            raise Refused(f"INCR answered {line.strip().decode(errors='replace')}")
        if not line.startswith(b":"):
            raise ConnectionError(f"unexpected answer to INCR: {line[:80]!r}")
        return int(line[1:].strip())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
            self.sock.close()


class PostgresInsert:
    """One committed INSERT per write (autocommit), the row's id being the write's n."""

    def __init__(self, address: str, port: int, run: str) -> None:
        import pg8000.exceptions  # type: ignore[import-untyped]  # only for PostgreSQL
        import pg8000.native  # type: ignore[import-untyped]

        self.database_error = pg8000.exceptions.DatabaseError

        self.db = pg8000.native.Connection(
            "postgres", host=address, port=port, database="postgres", timeout=ANSWER_TIMEOUT
        )
        self.db.run(
            f"CREATE TABLE IF NOT EXISTS {POSTGRES_TABLE} (run text NOT NULL, id bigint NOT NULL, "
            "at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run, id))"
        )
        self.run = run

    def write(self, n: int) -> int:
        try:
            self.db.run(
                f"INSERT INTO {POSTGRES_TABLE} (run, id) VALUES (:run, :n)", run=self.run, n=n
            )
        except self.database_error as error:
            fields = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
            # 08: connection exceptions; 57: shutting down, starting up, terminated.
            if str(fields.get("C", "")).startswith(("08", "57")):
                raise ConnectionError(fields.get("M", str(error))) from error
            raise Refused(f"INSERT answered {fields.get('C')}: {fields.get('M', error)}") from error
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.db.close()


def run_writer(
    connect: Callable[[str], Connection],
    addresses: Sequence[str],
    out: IO[str],
    stop: Callable[[], bool],
    *,
    fresh_ids: bool,
) -> Outcome:
    """Write until stop() says so, recording each acknowledged write in out."""
    outcome = Outcome()
    n = 0
    conn: Connection | None = None
    while not stop():
        if conn is None:
            conn = _connect_any(connect, addresses, stop, outcome)
            if conn is None:
                break
        n += 1
        try:
            value = conn.write(n)
        except Refused as error:
            _note(outcome, f"write {n}: {error}")
            outcome.refused = str(error)
            break
        except Exception as error:  # the connection broke: the write is unknown
            _note(outcome, f"write {n}: {error}")
            conn.close()
            conn = None
            outcome.reconnects += 1
            if not fresh_ids:
                n -= 1  # Redis numbers its writes itself (INCR's answer)
            continue
        out.write(f"{value} {time.time():.6f}\n")
        out.flush()
        outcome.acked += 1
        outcome.last = value
    if conn is not None:
        conn.close()
    return outcome


def _connect_any(
    connect: Callable[[str], Connection],
    addresses: Sequence[str],
    stop: Callable[[], bool],
    outcome: Outcome,
) -> Connection | None:
    while not stop():
        for address in addresses:
            try:
                return connect(address)
            except Exception as error:
                _note(outcome, f"connect {address}: {error}")
        time.sleep(RETRY_PAUSE)
    return None


def _note(outcome: Outcome, error: str, keep: int = 5) -> None:
    """Enough to say what happened, not one line per attempt."""
    outcome.failures += 1
    if len(outcome.errors) == 2 * keep:
        del outcome.errors[keep]
    outcome.errors.append(f"{time.time():.3f} {error}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m berth_lab.writers", description=__doc__)
    parser.add_argument("kind", type=Database, choices=list(Database))
    parser.add_argument("--address", action="append", required=True, help="tried in order")
    parser.add_argument("--port", type=int)
    parser.add_argument("--out", type=Path, required=True, help="the acknowledged writes")
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--run", default=uuid.uuid4().hex[:12], help="this run's name")
    args = parser.parse_args(argv)
    port = args.port or args.kind.port
    stopping = False

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    deadline = time.monotonic() + args.seconds
    kind = RedisIncr if args.kind is Database.REDIS else PostgresInsert
    with args.out.open("a") as out:
        outcome = run_writer(
            lambda address: kind(address, port, args.run),
            args.address,
            out,
            lambda: stopping or time.monotonic() > deadline,
            fresh_ids=args.kind is Database.POSTGRES,
        )
    json.dump({"run": args.run, **outcome.__dict__}, sys.stdout)
    print()
    return 1 if outcome.refused else 0


if __name__ == "__main__":
    sys.exit(main())
