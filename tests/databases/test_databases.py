"""PostgreSQL and Redis (Debian's packages, berth's templates) moved between real lab hosts
under load from a third host: their own benchmarks, and a client that records every
write the server acknowledged. Afterwards the target holds every acknowledged write;
live, the server is the same process; cold (disk only), it restarted and recovered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth_lab import Lab, plan_lab
from berth_lab.database_load import (
    RunningLoad,
    missing_acks,
    postgres_consistent,
    prepare,
    server_identity,
)
from berth_lab.dbtools import DatabaseTools, remove_tools, unpack_tools
from berth_lab.writers import longest_gap
from berth_operator.migration.state import Mode
from lab_repositories import remove_everywhere
from migration.helpers import migrate

pytestmark = pytest.mark.databases


@pytest.fixture(scope="module")
def dblab() -> Iterator[Lab]:
    """Three hosts: two to move between, one for the clients."""
    Lab(plan_lab("d", hosts=3)).down()
    running = Lab(plan_lab("d", hosts=3, datastore_size="12G")).up()
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def tools(dblab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseTools]:
    rootfs = unpack_tools(tmp_path_factory.mktemp("dbtools") / "rootfs")
    try:
        yield DatabaseTools(dblab.host("c"), rootfs)
    finally:
        remove_tools(rootfs)


@pytest.mark.parametrize(
    ("kind", "mode"),
    [("redis", Mode.LIVE), ("postgres", Mode.LIVE), ("redis", Mode.COLD), ("postgres", Mode.COLD)],
)
def test_every_acknowledged_write_moves(
    dblab: Lab, tools: DatabaseTools, tmp_path: Path, kind: str, mode: Mode
) -> None:
    name = f"{kind[:5]}{uuid.uuid4().hex[:6]}"
    source, target = dblab.host("a").address, dblab.host("b").address
    load: RunningLoad | None = None
    try:
        with dblab.agent("a") as a:
            guid = a.create(name, "2G", template=kind)["guid"]
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
        if mode is Mode.LIVE:
            assert after == before  # resumed: the same process, not a restart
        else:
            assert after != before
        if kind == "postgres":
            assert postgres_consistent(tools, target) == []
            assert "number of transactions actually processed" in result.benchmark_output
    finally:
        if load is not None:
            load.kill()
        remove_everywhere(dblab, name)
