"""PostgreSQL and Redis (Debian's packages, berth's templates) moved between real lab hosts
under load from a third host: their own benchmarks, and a client that records every
write the server acknowledged. Afterwards the target holds every acknowledged write;
live, the server is the same process; cold (disk only), it restarted and recovered."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth_lab import Lab
from berth_lab.database_load import (
    RunningLoad,
    missing_acks,
    postgres_consistent,
    prepare,
    server_identity,
)
from berth_lab.dbtools import DatabaseTools, remove_tools, unpack_tools
from berth_lab.scratch import remove_everywhere, three_hosts
from berth_lab.writers import POSTGRES_TABLE, Database, longest_gap
from berth_operator.migration.state import Mode
from migration.helpers import migrate

pytestmark = pytest.mark.databases


@pytest.fixture(scope="module")
def dblab() -> Iterator[Lab]:
    with three_hosts("d", "12G") as running:
        yield running


@pytest.fixture(scope="module")
def tools(dblab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseTools]:
    rootfs = unpack_tools(tmp_path_factory.mktemp("dbtools") / "rootfs")
    try:
        yield DatabaseTools(dblab.host("c"), rootfs)
    finally:
        remove_tools(rootfs)


@pytest.mark.parametrize(
    ("kind", "mode"),
    [(kind, mode) for mode in (Mode.LIVE, Mode.COLD) for kind in Database],
)
def test_every_acknowledged_write_moves(
    dblab: Lab, tools: DatabaseTools, tmp_path: Path, kind: Database, mode: Mode
) -> None:
    name = f"{kind[:5]}{uuid.uuid4().hex[:6]}"
    source, target = dblab.host("a").address, dblab.host("b").address
    load: RunningLoad | None = None
    try:
        with dblab.agent("a") as a:
            guid = a.create(name, "2G", template=kind).guid
            a.up(name, wait_answer=120)
        prepare(tools, kind, source)
        before = server_identity(tools, kind, source)
        load = RunningLoad(tools, kind, [source, target], tmp_path)
        load.wait_acks(50)

        state = migrate(dblab, name, guid, mode)

        assert state.result == "Succeeded", state.reason
        assert state.frozen_at_epoch is not None
        load.wait_acks(50, after=state.frozen_at_epoch)  # the writer found the target
        result = load.stop()
        after = server_identity(tools, kind, target)
        print(f"\n{kind} {mode}: downtime {state.downtime_seconds} s, "
              f"{len(result.acks)} writes acknowledged, longest gap "
              f"{longest_gap(result.acks):.3f} s; writer {result.writer_summary}")  # fmt: skip
        print(f"server before: {before}\nserver after:  {after}\nsteps: {state.step_seconds}")
        print("benchmark:\n" + "\n".join(result.benchmark_output.splitlines()[-25:]))

        assert missing_acks(tools, kind, target, result.run, result.acks) == []
        if kind is Database.POSTGRES:
            rows = tools.psql(target, f"SELECT count(*) FROM {POSTGRES_TABLE} WHERE run = "
                              f"'{result.run}'")  # fmt: skip
            print(f"acknowledged {len(result.acks)}, rows found on the target {rows} "
                  "(the write in flight at the break may be there too)")  # fmt: skip
        if mode is Mode.LIVE:
            assert after == before  # resumed: the same process, not a restart
        else:
            assert after != before
        if kind is Database.POSTGRES:
            assert postgres_consistent(tools, target) == []
            assert "number of transactions actually processed" in result.benchmark_output
    finally:
        if load is not None:
            load.kill()
        remove_everywhere(dblab, name)


def test_redis_keys_expire_on_time_after_a_live_move_to_a_host_of_another_uptime(
    dblab: Lab, tools: DatabaseTools
) -> None:
    """Redis expires keys from a timer on CLOCK_MONOTONIC (serverCron): restored into
    host-b's clock, 7 days behind host-a's, that timer would not fire for 7 days and
    keys nobody reads would never go. They must go when their TTL ends."""
    name = f"ttl{uuid.uuid4().hex[:6]}"
    source, target = dblab.host("a").address, dblab.host("b").address
    ttl_s, keys = 40, 200
    try:
        with dblab.agent("a") as a:
            guid = a.create(name, "2G", template="redis").guid
            a.up(name, wait_answer=120)
        prepare(tools, Database.REDIS, source)
        tools.redis(source, "SET", "long", "x", "EX", "600")
        set_at = time.time()
        tools.redis(source, "EVAL", "for i = 1, tonumber(ARGV[1]) do "
                    "redis.call('SET', 'ttl:' .. i, 'x', 'EX', ARGV[2]) end",
                    "0", str(keys), str(ttl_s))  # fmt: skip

        state = migrate(dblab, name, guid)

        assert state.result == "Succeeded", state.reason
        assert time.time() < set_at + ttl_s - 5, "the move outlasted the keys' TTL"
        assert int(tools.redis(target, "DBSIZE")) == keys + 1  # none gone before their time
        # Nobody reads them: only Redis's own expiry cycle (its timer) removes them.
        while time.time() < set_at + ttl_s + 5 and int(tools.redis(target, "DBSIZE")) > 1:
            time.sleep(0.5)
        left = int(tools.redis(target, "DBSIZE"))
        print(f"\n{keys} keys with a {ttl_s} s TTL: {left - 1} left "
              f"{time.time() - set_at:.1f} s after they were set")  # fmt: skip
        assert left == 1
        remaining = int(tools.redis(target, "TTL", "long"))
        assert abs(remaining - (600 - (time.time() - set_at))) <= 3
    finally:
        remove_everywhere(dblab, name)
