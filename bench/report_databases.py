"""database_bench.py's moves in the report: per database and mode, the spread of each
figure over the moves, and the table docs/performance.md shows."""

from __future__ import annotations

from typing import Any

from tables import SPREAD_LIMIT, spread, table


def summarize_databases(raw: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for case in raw.get("cases", []):
        runs = case["runs"]
        transactions = [float(r["transactions"]) for r in runs if r.get("transactions")]
        rows.append({
            "kind": case["kind"],
            "mode": case["mode"],
            "data_mb": case.get("data_mb", 0),
            "moves": len(runs),
            "downtime_status_s": spread([r["downtime_status_s"] for r in runs]),
            "client_gap_s": spread([r["client_gap_s"] for r in runs]),
            "recovery_s": spread([r["recovery_s"] for r in runs]),
            "acked": sum(r["acked"] for r in runs),
            "lost": sum(r["lost"] for r in runs),
            "same_process": sum(bool(r["same_process"]) for r in runs),
            "transactions": spread(transactions),
            "problems": sorted({p for r in runs for p in r.get("problems", [])}),
            "failed_moves": len(case.get("failures", [])),
        })  # fmt: skip
    return rows


def _cell(s: dict[str, float] | None, digits: int = 3) -> str:
    if not s:
        return "-"
    text = " / ".join(f"{s[k]:.{digits}f}" for k in ("min", "median", "max"))
    return text + (" ⚠" if s["relative"] > SPREAD_LIMIT else "")


def _measured(commits: list[str | None]) -> str:
    known = [f"`{c}`" for c in dict.fromkeys(commits) if c]
    if not known:
        return "."
    if len(known) == 1:
        return f". Measured at commit {known[0]}."
    return f". Measured at commits {', '.join(known)} (the later runs: the larger data)."


def databases_section(rows: list[dict[str, Any]], commits: list[str | None]) -> list[str]:
    table_rows = [
        [r["kind"], str(r.get("data_mb") or "-"), r["mode"], str(r["moves"]),
         _cell(r["downtime_status_s"]),
         _cell(r["client_gap_s"]), _cell(r["recovery_s"]), _cell(r["transactions"], 0),
         str(r["acked"]), "0" if not r["lost"] else f"**{r['lost']}**",
         f"{r['same_process']} of {r['moves']}",
         "; ".join(r["problems"]) or ("none" if r["kind"] == "postgres" else "-"),
         str(r["failed_moves"])]
        for r in rows
    ]  # fmt: skip
    return [
        "## Databases under load", "",
        "`bench/database_bench.py`: PostgreSQL 15 and Redis 7 (berth's `postgres` and `redis`",
        "templates, Debian's packages) moved between host-a and host-b by berth's migration",
        "driver, live (CRIU) and cold (disk only: stopped with its stop signal, started on",
        "the target), while host-c runs the database's own benchmark (pgbench TPC-B-like, 4",
        "clients; redis-benchmark SET/INCR, 4 clients) and a client that records every",
        "write the server acknowledged and reconnects to whichever host answers. Each cell:",
        "min / median / max of the moves. Client gap: the longest time between two",
        "acknowledged writes; recovery: that gap less the status downtime (the client",
        "waiting after berth said the service answers). Lost: acknowledged writes missing",
        "on the target. Same process: the server's start time (PostgreSQL) or run_id",
        "(Redis) unchanged. Checks: pg_amcheck (heap, every index entry) and TPC-B's sums"
        + _measured(commits), "",
        table(["database", "data MB", "move", "moves", "downtime s (status)", "client gap s",
               "recovery s", "pgbench transactions", "acknowledged", "lost", "same process",
               "checks failed", "failed moves"], table_rows), "",
    ]  # fmt: skip
