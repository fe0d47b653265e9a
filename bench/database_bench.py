"""PostgreSQL and Redis moved under load, live (CRIU) and cold (disk only), side by side in
one run: what live migration saves a database's clients.

    .venv/bin/python bench/database_bench.py [--kinds redis,postgres] [--modes live,cold]
                                             [--repeat 3] [--pgbench-scale 5]
    # PostgreSQL with 3 GB of data, its own results file:
    .venv/bin/python bench/database_bench.py --kinds postgres --pgbench-scale 200 \
                                             --repeat 2 --results databases_large

For each database and mode, a repository made from berth's template (`postgres`, `redis`)
is placed on host-a and moved between host-a and host-b `--repeat` times by berth's
migration driver. During each move host-c runs the database's own benchmark (pgbench
TPC-B-like with 4 clients; redis-benchmark SET/INCR with 4) and berth_lab.writers, which
records every write the server acknowledged and reconnects to whichever host answers.
Measured per move: the status downtime; the client's longest gap between two
acknowledged writes; recovery, that gap less the downtime (what the client waited after
berth said the service answers: the database starting and recovering, when cold); the
acknowledged writes the target lacks (must be 0); whether the server is the same process
(live) or a new one (cold); pgbench's transactions. Writes bench/results/databases.json
after each case; bench/report.py puts the table into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from berth_lab import Lab
from berth_lab.agents import LabAgents
from berth_lab.database_load import (
    PGBENCH_MB_PER_SCALE,
    PGBENCH_SCALE,
    RunningLoad,
    missing_acks,
    postgres_consistent,
    prepare,
    server_identity,
    wait_ready,
)
from berth_lab.dbtools import DatabaseTools, unpack_tools
from berth_lab.scratch import remove_everywhere, three_hosts
from berth_lab.writers import Database, longest_gap
from berth_operator.migration.driver import MigrationDriver
from berth_operator.migration.listener import Unrecorded
from berth_operator.migration.state import MigrationState, Mode
from downtime_bench import RESULTS
from report import ROOT, commit_label

ACKS_AROUND = 40  # acknowledged writes waited for before the move and after it
_PROCESSED = re.compile(r"number of transactions actually processed: (\d+)")


def say(text: str) -> None:
    print(f"[databases] {text}", flush=True)


def one_move(
    lab: Lab, tools: DatabaseTools, kind: Database, mode: Mode, name: str, guid: str,
    here: str, there: str, workdir: Path,
) -> dict[str, Any]:  # fmt: skip
    source, target = lab.host(here).address, lab.host(there).address
    before = server_identity(tools, kind, source)
    load = RunningLoad(tools, kind, [source, target], workdir)
    try:
        load.wait_acks(ACKS_AROUND)
        state = MigrationState(
            id=f"m-{uuid.uuid4().hex[:8]}", repository=name, guid=guid,
            source=f"host-{here}", target=f"host-{there}", mode=mode, memory="freeze",
        )  # fmt: skip
        state = MigrationDriver(
            LabAgents(lab), lab.pki.client, Unrecorded(), answer_timeout=60
        ).run(state)
        if state.result != "Succeeded" or state.frozen_at_epoch is None:
            raise RuntimeError(f"the move failed: {state.reason}")
        load.wait_acks(ACKS_AROUND, after=state.frozen_at_epoch)
        result = load.stop()
    finally:
        load.kill()
    wait_ready(tools, kind, target)
    after = server_identity(tools, kind, target)
    gap = longest_gap(result.acks)
    processed = _PROCESSED.search(result.benchmark_output)
    run: dict[str, Any] = {
        "from": here, "to": there,
        "downtime_status_s": state.downtime_seconds,
        "client_gap_s": round(gap, 3),
        "recovery_s": round(gap - (state.downtime_seconds or 0.0), 3),
        "acked": len(result.acks),
        "lost": len(missing_acks(tools, kind, target, result.run, result.acks)),
        "same_process": after == before,
        "server_before": before, "server_after": after,
        "transactions": int(processed.group(1)) if processed else None,
        "delta_bytes": state.delta_bytes,
        "step_seconds": state.step_seconds,
    }  # fmt: skip
    if kind is Database.POSTGRES:
        run["problems"] = postgres_consistent(tools, target)
    return run


def one_case(
    lab: Lab, tools: DatabaseTools, kind: Database, mode: Mode, repeat: int, workdir: Path,
    scale: int = PGBENCH_SCALE,
) -> dict[str, Any]:  # fmt: skip
    big = kind is Database.POSTGRES and scale != PGBENCH_SCALE
    name = f"{kind[:5]}-{mode.value}" + (f"-s{scale}" if big else "")
    data_mb = scale * PGBENCH_MB_PER_SCALE if kind is Database.POSTGRES else 0
    # Room for the data twice over (its WAL, a checkpoint's copy) and the image.
    size = f"{max(3, (3 * data_mb) // 1024 + 3)}G"
    with lab.agent("a") as agent:
        guid = agent.create(name, size, template=kind).guid
        agent.up(name, wait_answer=120)
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    here, there = "a", "b"
    try:
        prepare(tools, kind, lab.host("a").address, scale)
        for i in range(repeat):
            try:
                run = one_move(
                    lab, tools, kind, mode, name, guid, here, there, workdir / name / str(i)
                )
            except Exception as error:
                failures.append(f"move {i + 1}: {error}")
                say(f"{name}: move {i + 1} failed: {error}")
                break
            runs.append(run)
            say(f"{name} {here}->{there}: downtime {run['downtime_status_s']:.3f} s, client gap "
                f"{run['client_gap_s']:.3f} s, {run['acked']} acknowledged, lost {run['lost']}, "
                f"same process {run['same_process']}")  # fmt: skip
            here, there = there, here
    finally:
        remove_everywhere(lab, name)
    return {"kind": kind.value, "mode": mode.value, "data_mb": data_mb, "runs": runs,
            "failures": failures}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="redis,postgres")
    parser.add_argument("--modes", default="live,cold")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--pgbench-scale",
        type=int,
        default=PGBENCH_SCALE,
        help=f"PostgreSQL's data: pgbench's scale ({PGBENCH_MB_PER_SCALE} MB each)",
    )
    parser.add_argument(
        "--results", default="databases", help="bench/results/NAME.json (default databases)"
    )
    args = parser.parse_args()
    known = [d.value for d in Database]
    unknown = [k for k in args.kinds.split(",") if k and k not in known]
    if unknown:
        parser.error(f"unknown --kinds {unknown}: {', '.join(known)}")
    kinds = [Database(k) for k in args.kinds.split(",") if k]
    modes = [Mode(m) for m in args.modes.split(",") if m]
    out = RESULTS / f"{args.results}.json"
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, Any] = {"commit": commit_label(ROOT), "cases": []}
    workdir = Path(tempfile.mkdtemp(prefix="berth-databases-"))
    try:
        with three_hosts("perf", "16G") as lab:
            say("unpacking the databases' tools for host-c")
            tools = DatabaseTools(lab.host("c"), unpack_tools(workdir / "rootfs"))
            for kind in kinds:
                for mode in modes:
                    started = time.monotonic()
                    say(f"{kind} {mode.value}: {args.repeat} moves under load")
                    results["cases"].append(
                        one_case(lab, tools, kind, mode, args.repeat, workdir, args.pgbench_scale)
                    )
                    out.write_text(json.dumps(results, indent=2))
                    say(f"{kind} {mode.value} done in {time.monotonic() - started:.0f} s -> {out}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the tools' rootfs with it
    failed = sum(len(c["failures"]) for c in results["cases"])
    lost = sum(r["lost"] for c in results["cases"] for r in c["runs"])
    return 1 if failed or lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
