"""Load on a database while berth moves it, from a third lab host: the database's own
benchmark (pgbench, TPC-B-like; redis-benchmark) beside berth_lab.writers, which records
every write the server acknowledged; and what to check on the target afterwards."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from berth_lab.dbtools import PG_BIN, DatabaseTools
from berth_lab.writers import POSTGRES_TABLE, REDIS_KEY, Ack, Database, read_acks

PGBENCH_SCALE = 5  # 500,000 accounts: 75 MB of tables and indexes
PGBENCH_MB_PER_SCALE = 15  # on disk, tables and indexes, per unit of scale


def server_identity(tools: DatabaseTools, kind: Database, address: str) -> str:
    """What changes only when the server process restarts: Redis's run_id (random at
    each start) and its pid; PostgreSQL's postmaster start time and pid."""
    if kind is Database.REDIS:
        info = dict(
            line.split(":", 1)
            for line in tools.redis(address, "INFO", "server").splitlines()
            if ":" in line
        )
        return f"run_id={info['run_id'].strip()} pid={info['process_id'].strip()}"
    started = tools.psql(address, "SELECT pg_postmaster_start_time()")
    pid = tools.psql(
        address, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"
    )
    return f"started={started} checkpointer_pid={pid}"


def wait_ready(tools: DatabaseTools, kind: Database, address: str, timeout: float = 60) -> None:
    """Until the server accepts queries (a port that answers may still be starting up)."""
    argv = (
        ["redis-cli", "-h", address, "PING"]
        if kind is Database.REDIS
        else [f"{PG_BIN}/pg_isready", "-h", address, "-U", "postgres"]
    )
    deadline = time.monotonic() + timeout
    while True:
        done = tools.run(argv, check=False, timeout=30)
        answer = done.stdout.decode(errors="replace")
        if done.returncode == 0 and "LOADING" not in answer:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{kind} at {address} not ready in {timeout:.0f}s: {answer}")
        time.sleep(0.2)


def prepare(tools: DatabaseTools, kind: Database, address: str, scale: int = PGBENCH_SCALE) -> None:
    """Once the server is ready, pgbench's tables at scale (Redis needs nothing)."""
    wait_ready(tools, kind, address)
    if kind is Database.POSTGRES:
        tools.run([f"{PG_BIN}/pgbench", "-h", address, "-U", "postgres", "-i", "-q",
                   "-s", str(scale), "postgres"], timeout=3600)  # fmt: skip


def benchmark_argv(kind: Database, address: str, seconds: int) -> list[str]:
    if kind is Database.REDIS:
        # Far more requests than it makes in the time: it runs until the move breaks it.
        return ["redis-benchmark", "-h", address, "-c", "4", "-n", "10000000",
                "-t", "set,incr", "-q"]  # fmt: skip
    # -n: no vacuum first, which would also empty pgbench_history, whose sum TPC-B's
    # invariant compares with the balances (postgres_consistent).
    return [f"{PG_BIN}/pgbench", "-h", address, "-U", "postgres", "-n", "-c", "4", "-j", "2",
            "-T", str(seconds), "-P", "2", "postgres"]  # fmt: skip


@dataclass
class LoadResult:
    run: str  # the writer's run: its Redis key, its PostgreSQL rows
    acks: list[Ack]
    writer_summary: str
    benchmark_output: str


class RunningLoad:
    """The writer and the benchmark, running on the tools' host."""

    def __init__(
        self, tools: DatabaseTools, kind: Database, addresses: Sequence[str], workdir: Path,
        seconds: int = 60,
    ) -> None:  # fmt: skip
        self.tools, self.kind = tools, kind
        self.run = uuid.uuid4().hex[:12]
        workdir.mkdir(parents=True, exist_ok=True)
        self.acks_path = workdir / f"{kind}-acks"
        self.acks_path.write_text("")
        self.writer_log = workdir / f"{kind}-writer.log"
        self.benchmark_log = workdir / f"{kind}-benchmark.log"
        for fresh in (self.writer_log, self.benchmark_log):  # a log of this run only
            fresh.write_text("")
        address_args = [arg for a in addresses for arg in ("--address", a)]
        self.writer = tools.host.spawn(
            [sys.executable, "-m", "berth_lab.writers", kind, *address_args,
             "--out", str(self.acks_path), "--run", self.run],
            self.writer_log,
        )  # fmt: skip
        self.benchmark = tools.spawn(
            benchmark_argv(kind, addresses[0], seconds), self.benchmark_log
        )

    def acks(self) -> list[Ack]:
        return read_acks(self.acks_path.read_text())

    def wait_acks(self, count: int, after: float = 0.0, timeout: float = 60) -> None:
        """Until count writes were acknowledged after the epoch `after`."""
        deadline = time.monotonic() + timeout
        while sum(1 for ack in self.acks() if ack.at > after) < count:
            if self.writer.poll() is not None:
                raise AssertionError(f"the writer exited: {self.writer_log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"fewer than {count} writes acknowledged after {after} in {timeout:.0f}s: "
                    f"{self.writer_log.read_text()[-2000:]}"
                )
            time.sleep(0.2)

    def stop(self, benchmark_timeout: float = 120) -> LoadResult:
        self.writer.send_signal(signal.SIGTERM)
        self.writer.wait(timeout=30)
        try:
            self.benchmark.wait(timeout=benchmark_timeout)
        except subprocess.TimeoutExpired:
            self.benchmark.kill()
            self.benchmark.wait()
        return LoadResult(
            run=self.run,
            acks=self.acks(),
            writer_summary=self.writer_log.read_text().strip().splitlines()[-1],
            benchmark_output=_lines(self.benchmark_log.read_text(errors="replace")),
        )

    def kill(self) -> None:
        for proc in (self.writer, self.benchmark):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _lines(output: str) -> str:
    """redis-benchmark redraws its progress line with carriage returns: one per line."""
    lines = output.replace("\r", "\n").splitlines()
    return "\n".join(line.strip() for line in lines if line.strip())


def missing_acks(
    tools: DatabaseTools, kind: Database, address: str, run: str, acks: Sequence[Ack]
) -> list[int]:
    """The acknowledged writes the database at address does not hold. Redis: an INCR
    answered n is held if the counter is at least n now and the answers never went back
    (a server that lost writes would count them again). PostgreSQL: every row."""
    if kind is Database.REDIS:
        counter = tools.redis(address, "GET", REDIS_KEY.format(run=run))
        return redis_missing(int(counter or 0), acks)
    rows = tools.psql(address, f"SELECT id FROM {POSTGRES_TABLE} WHERE run = '{run}'").split()
    held = {int(row) for row in rows}
    return [ack.n for ack in acks if ack.n not in held]


def redis_missing(counter: int, acks: Sequence[Ack]) -> list[int]:
    """The INCRs answered that a counter now at `counter` does not hold: those above it,
    and those whose answer did not go up (counted again after being lost)."""
    missing = {ack.n for ack in acks if ack.n > counter}
    highest = 0
    for ack in acks:
        if ack.n <= highest:
            missing.add(ack.n)
        highest = max(highest, ack.n)
    return sorted(missing)


def postgres_consistent(tools: DatabaseTools, address: str) -> list[str]:
    """PostgreSQL's own checks (pg_amcheck: every table's heap and every B-tree index,
    each index entry matched to its heap tuple) and TPC-B's invariant (branches, tellers,
    accounts and history add up to the same sum); the problems found."""
    problems = []
    check = tools.run([f"{PG_BIN}/pg_amcheck", "-h", address, "-U", "postgres",
                       "--install-missing", "--heapallindexed", "--rootdescend", "postgres"],
                      check=False, timeout=600)  # fmt: skip
    if check.returncode != 0:
        said = (check.stdout + check.stderr).decode(errors="replace")
        problems.append(f"pg_amcheck exited {check.returncode}: {said}")
    sums = tools.psql(
        address,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
        "(SELECT sum(bbalance) FROM pgbench_branches), "
        "(SELECT sum(tbalance) FROM pgbench_tellers), "
        "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)",
    ).split("|")
    if len(set(sums)) != 1:
        problems.append(f"TPC-B sums differ (accounts|branches|tellers|history): {sums}")
    return problems
