"""Turn the benchmarks' JSON into the kept figures: bench/results/latest.json and
docs/performance.md, with its plots in docs/performance/.

    .venv/bin/python bench/report.py --stamp [--suite quick]   # before measuring
    .venv/bin/python bench/report.py                           # after

`bash bench/run.sh` runs both around the benchmarks. --stamp records what is measured:
the commit ("+dirty" when tracked files differ from it), the UTC date and the machine, in
bench/results/measured.json. The report puts that stamp, every figure under stable keys
(documented in bench/README.md) and each target with its verdict into latest.json, so a
script can check them; docs/performance.md is the same as tables and plots.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from berth_operator.migration.state import steps_together
from report_databases import databases_section, summarize_databases
from tables import SPREAD_LIMIT, spread, table

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
STAMP = RESULTS / "measured.json"
LATEST = RESULTS / "latest.json"
PAGE = ROOT / "docs" / "performance.md"
PLOTS = ROOT / "docs" / "performance"
# The plots as the page links them (relative to docs/).
PLOT_LINKS = {"downtime": "performance/downtime.png", "steps": "performance/steps.png"}
# What the report writes: a tree changed only there still runs the commit's code.
OUTPUTS = ("bench/results", "docs/performance.md", "docs/performance")
# Issue 18's targets for a 2 GiB repository with 50 MiB written during bulk, pulse and
# ledger alike, by status and by prober: the median move and the slowest one.
TARGET_CASE = "2g_50m"
DOWNTIME_MEDIAN_TARGET_S = 0.5
DOWNTIME_MAX_TARGET_S = 0.8
GROWTH_TARGET = 0.10  # of the median downtime, from 1 GiB to 8 GiB
FLOOR_FACTOR = 1.5  # berth <= 1.5 x the bare-CRIU floor + the final delta's send time
LINK_SHARE_TARGET = 0.90
# operator_scale.py's figures, in its summary and on the page: (label, key or (key, sub)),
# one column per design and scale.
OPERATOR_ROWS: list[tuple[str, str | tuple[str, str]]] = [
    ("all Ready after start (s)", "all_ready_s"),
    ("most Ready at once during start", "ready_most_during_startup"),
    ("Stalled on the way during start", "stalled_during_startup"),
    ("API server 429s during start", "apiserver_rejected_429_during_startup"),
    ("RSS at rest (MiB)", "rss_mib_rest"),
    ("CPU at rest (% of a core)", "cpu_percent_rest"),
    ("API requests/s at rest: Machine heartbeat writes", "apiserver_heartbeat_writes_per_s_rest"),
    ("API requests/s at rest: beyond heartbeats", "apiserver_beyond_heartbeats_per_s_rest"),
    ("API server 429s/s at rest", "apiserver_rejected_429_per_s_rest"),
    ("agent requests/s at rest", "agent_requests_per_s_rest"),
    ("agent TLS connections/s at rest", "agent_connections_per_s_rest"),
    ("patch -> first phase, single (s)", ("patch_to_first_phase_s", "single")),
    ("patch -> first phase, p50 (s)", ("patch_to_first_phase_s", "p50")),
    ("patch -> first phase, p99 (s)", ("patch_to_first_phase_s", "p99")),
    ("patch -> first phase, max (s)", ("patch_to_first_phase_s", "max")),
    ("patch -> Ready, concurrent max (s)", ("patch_to_ready_s", "concurrent_max")),
    ("concurrent moves done", "moves_done"),
    ("most migrating at once, per machine", "migrating_max_per_machine"),
    ("most migrating at once, in all", "migrating_max_cluster"),
    ("RSS migrating (MiB, peak)", "rss_mib_migrating"),
    ("CPU migrating (% of a core)", "cpu_percent_migrating"),
    ("run time (s)", "run_s"),
]
# Issue 21's targets, checked for the current design at the largest scale (5,000
# placements on 100 machines): key -> (as the page states it, met by a value).
OPERATOR_TARGETS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "all_ready_s": ("<= 60 s", lambda v: v is not None and v <= 60),
    "rss_mib_rest": ("<= 400 MiB", lambda v: v is not None and v <= 400),
    "cpu_percent_rest": ("<= 2 %", lambda v: v is not None and v <= 2),
    "apiserver_beyond_heartbeats_per_s_rest": ("<= 1/s", lambda v: v is not None and v <= 1),
    "patch_to_first_phase_s.p99": ("<= 1 s", lambda v: v is not None and v <= 1),
    "moves_done": ("all, within the limits", lambda v: v is True),
}


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def final_delta_seconds(steps: dict[str, float]) -> float:
    return sum(v for k, v in steps.items() if k.startswith("final."))


def final_send_seconds(steps: dict[str, float]) -> float:
    """The final delta's send time: what the floor budget allows beyond 1.5 x the floor."""
    return steps.get("final.send", 0.0)


def case_key(case: dict[str, Any]) -> str:
    return f"{case['repository_gib']}g_{case['written_during_bulk_mib']}m"


def wide_spreads(spreads: dict[str, dict[str, float] | None]) -> list[str]:
    """The figures whose repeats spread wider than SPREAD_LIMIT of their median."""
    return [name for name, s in spreads.items() if s and s["relative"] > SPREAD_LIMIT]


def ratio(value: float, reference: float) -> float | None:
    return round(value / reference, 3) if reference else None


def summarize_case(case: dict[str, Any]) -> dict[str, Any]:
    """One case's figures: each as min / median / max of its moves, the median move's
    steps, both floors, berth over each floor and the budget."""
    steps = case["step_seconds"]
    runs = case.get("runs", [])
    floor_criu, floor_docker = case["floor_criu"]["total"], case["floor_docker"]["total"]
    send_s = final_send_seconds(steps)
    spreads = {
        "status": spread([r["downtime_status_s"] for r in runs]),
        "prober": spread([r["downtime_prober_s"] for r in runs if r.get("prober_followed")]),
        "floor_criu": spread([f["total"] for f in case.get("floors_criu", [])]),
        "floor_docker": spread([f["total"] for f in case.get("floors_docker", [])]),
        "final_send": spread([final_send_seconds(r["step_seconds"]) for r in runs]),
    }
    downtime = case["downtime_status_s"]
    budget = FLOOR_FACTOR * floor_criu + send_s
    summary: dict[str, Any] = {
        "spread_s": spreads,
        "spread_mb": {"delta": spread([r["delta_bytes"] / 1e6 for r in runs])},
        "wide_spread": wide_spreads(spreads),
        "downtime_status_s": downtime,
        "downtime_prober_s": case["downtime_prober_s"],
        "downtime_runs_s": [r["downtime_status_s"] for r in runs],
        "prober_runs_s": [r["downtime_prober_s"] for r in runs],
        "probe_every_s": case.get("probe_every_s"),
        "floor_criu_s": round(floor_criu, 3),
        "floor_docker_s": round(floor_docker, 3),
        "of_floor_criu": ratio(downtime, floor_criu),
        "of_floor_docker": ratio(downtime, floor_docker),
        "final_delta_s": round(final_delta_seconds(steps), 3),
        "final_send_s": round(send_s, 3),
        "delta_bytes": case["delta_bytes"],
        "bulk_bytes": case["bulk_bytes"],
        "budget_s": round(budget, 3),
        "of_budget": round(downtime / budget, 3),
        "steps_s": steps,
    }
    if case.get("workload") == "ledger":
        summary["ledger_records"] = [r.get("ledger_records") for r in runs]
        summary["ledger_lost"] = [p for r in runs for p in r.get("ledger_lost", [])]
    return summary


def summarize_downtime(raw: dict[str, Any], workload: str = "pulse") -> dict[str, Any]:
    return {case_key(case): summarize_case(case) for case in raw.get(workload, [])}


def downtime_targets(name: str, case: dict[str, Any]) -> dict[str, Any]:
    """Median and max downtime of a case, by status and by prober, against issue 18's."""
    out: dict[str, Any] = {}
    for figure in ("status", "prober"):
        found = case["spread_s"].get(figure)
        for stat, target in (("median", DOWNTIME_MEDIAN_TARGET_S), ("max", DOWNTIME_MAX_TARGET_S)):
            key = f"{name}_{figure}_{stat}"
            if found:
                out[key] = verdict(found[stat], target, found[stat] <= target)
            else:  # no move the prober followed: nothing measured, nothing met
                out[key] = {"value": None, "target": target, "met": False}
    return out


def growth_targets(cases: dict[str, Any]) -> dict[str, Any]:
    """Median downtime from 1 to 8 GiB, per amount written: under 10 % more, and never
    less (a repository that gets faster as it grows is a measurement to explain)."""
    out: dict[str, Any] = {}
    for write in sorted({k.split("_")[1] for k in cases}, key=lambda w: int(w[:-1])):
        small, large = cases.get(f"1g_{write}"), cases.get(f"8g_{write}")
        if not (small and large):
            continue
        for figure in ("status", "prober"):
            before, after = small["spread_s"].get(figure), large["spread_s"].get(figure)
            if not (before and after and before["median"]):
                continue
            growth = after["median"] / before["median"] - 1
            goal = verdict(growth, GROWTH_TARGET, 0 <= growth < GROWTH_TARGET)
            if growth < 0:
                goal["faster_as_it_grows"] = True
            out[f"growth_1g_to_8g_{write}_{figure}"] = goal
    return out


def targets(
    cases: dict[str, Any], raw: dict[str, Any], ledger: dict[str, Any] | None = None
) -> dict[str, Any]:
    ledger = ledger or {}
    out: dict[str, Any] = {}
    for workload, found in (("pulse", cases), ("ledger", ledger)):
        if TARGET_CASE in found:
            out |= downtime_targets(f"{workload}_{TARGET_CASE}", found[TARGET_CASE])
    out |= growth_targets(cases)
    worst = max(labelled(cases, ledger).items(), key=lambda kv: kv[1]["of_budget"], default=None)
    if worst:
        value = worst[1]["of_budget"]
        out["within_floor_budget"] = {**verdict(value, 1.0, value <= 1.0), "worst_case": worst[0]}
    if ledger:
        lost = sum(len(c["ledger_lost"]) for c in ledger.values())
        out["ledger_nothing_lost"] = verdict(lost, 0, lost == 0)
    for push in raw.get("throughput", []):
        if "share_of_link" in push:
            share = push["share_of_link"]
            out["bulk_share_of_1gbit"] = verdict(
                share, LINK_SHARE_TARGET, share >= LINK_SHARE_TARGET
            )
    return out


def verdict(value: float, target: float, met: bool) -> dict[str, Any]:
    return {"value": round(value, 3), "target": target, "met": met}


def new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    # matplotlib loads only to plot: the unit tests and operator_scale.py import this
    # module for its rendering and its rows, and need no backend.
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def save(fig: Figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def errors(found: dict[str, float]) -> tuple[float, float]:
    """A spread as error bars: below and above its median."""
    return found["median"] - found["min"], found["max"] - found["median"]


def plot_spreads(ax: Axes, xs: list[int], spreads: list[dict[str, float]], style: str,
                 label: str) -> None:  # fmt: skip
    below, above = zip(*(errors(s) for s in spreads), strict=True)
    ax.errorbar(xs, [s["median"] for s in spreads], yerr=[below, above], fmt=style,
                capsize=3, label=label)  # fmt: skip


def plot_downtime(cases: dict[str, Any], ledger: dict[str, Any], path: Path) -> None:
    """Median downtime by size (bars: min to max), by status and by prober."""
    sizes = sorted({int(k.split("g_")[0]) for k in [*cases, *ledger]})
    writes = sorted({int(k.split("_")[1][:-1]) for k in cases})
    fig, ax = new_figure(7, 4)
    for workload, found, marks in (("pulse", cases, ("o-", "x--")), ("ledger", ledger, ("s", "D"))):
        for write in writes:
            got = [(s, found[f"{s}g_{write}m"]) for s in sizes if f"{s}g_{write}m" in found]
            for figure, style in zip(("status", "prober"), marks, strict=True):
                points = [(s, c["spread_s"][figure]) for s, c in got if c["spread_s"].get(figure)]
                if points:
                    xs, spreads = zip(*points, strict=True)
                    plot_spreads(ax, list(xs), list(spreads), style,
                                 f"{workload}, {figure}, {write} MiB written")  # fmt: skip
    ax.axhline(DOWNTIME_MEDIAN_TARGET_S, color="grey", linestyle=":", label="target, median")
    ax.axhline(DOWNTIME_MAX_TARGET_S, color="grey", linestyle="--", label="target, max")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{s} GiB" for s in sizes])
    ax.set_xlabel("repository size")
    ax.set_ylabel("downtime (s)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=6)
    ax.set_title("downtime of a live move: median, min to max")
    save(fig, path)


STEP_GROUPS = [
    ("freeze (CRIU dump)", "freeze."),
    ("final delta", "final."),
    ("mount", "up.mount"),
    ("dockerd start", "up.dockerd"),
    ("restore (CRIU)", "up.restore"),
    ("neighbours, services, answer", "up."),
    ("operator (status write, calls)", "operator."),
]


def step_breakdown(steps: dict[str, float]) -> list[tuple[str, float]]:
    used: set[str] = set()
    out = []
    for label, prefix in STEP_GROUPS:
        keys = [k for k in steps if k.startswith(prefix) and k not in used]
        used.update(keys)
        out.append((label, steps_together({k: steps[k] for k in keys})))
    return out


def labelled(cases: dict[str, Any], ledger: dict[str, Any]) -> dict[str, Any]:
    """Every case under one name: pulse's by size and amount written, ledger's marked."""
    return cases | {f"ledger {k}": c for k, c in ledger.items()}


def plot_steps(cases: dict[str, Any], path: Path) -> None:
    names = list(cases)
    fig, ax = new_figure(8, 4)
    bottoms = [0.0] * len(names)
    for i, (label, _) in enumerate(STEP_GROUPS):
        values = [step_breakdown(cases[n]["steps_s"])[i][1] for n in names]
        ax.bar(names, values, bottom=bottoms, label=label)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ax.plot(names, [cases[n]["downtime_status_s"] for n in names], "k_", markersize=20,
            label="downtime (status)")  # fmt: skip
    ax.plot(names, [cases[n]["floor_criu_s"] for n in names], "r*", label="floor: bare CRIU")
    ax.plot(names, [cases[n]["floor_docker_s"] for n in names], "m^",
            label="floor: docker checkpoint + start")  # fmt: skip
    ax.set_ylabel("seconds")
    ax.set_title("downtime by step (median move), next to the floors (same run)")
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    save(fig, path)


def measured_line(measured: dict[str, Any]) -> str:
    machine = measured.get("machine", {})
    cpu = f" ({machine['cpu']})" if machine.get("cpu") else ""
    return (
        f"Measured at commit `{measured.get('commit', '?')}` on {measured.get('date', '?')} "
        f"(UTC), {measured.get('suite', 'full')} suite, on {machine.get('nproc', '?')} CPUs"
        f"{cpu}, {machine.get('memory_gib', '?')} GiB of memory, Linux "
        f"{machine.get('kernel', '?')}."
    )


def targets_section(goals: dict[str, Any], latest: dict[str, Any]) -> list[str]:
    met = sum(1 for g in goals.values() if g["met"])
    rows = [[k, "not measured" if v["value"] is None else str(v["value"]), str(v["target"]),
             verdict_cell(v)] for k, v in goals.items()]  # fmt: skip
    parts = [
        "## Targets", "", f"{met} of {len(goals)} met.", "",
        table(["target", "value", "target", "verdict"], rows), "",
    ]  # fmt: skip
    notes = missed_notes(latest)
    if notes:
        parts += ["### Not met: by how much, why, and what would close it", "", *notes, ""]
    return parts


def verdict_cell(goal: dict[str, Any]) -> str:
    if goal.get("faster_as_it_grows"):
        return "**not met: faster as it grows, a measurement to explain**"
    return "met" if goal["met"] else "**not met**"


def spread_cell(
    case: dict[str, Any], figure: str, single: float, group: str = "spread_s", digits: int = 3
) -> str:
    """min / median / max of a figure's repeats, marked when they spread too wide; the
    single value where there are none (the prober followed no move)."""
    found = (case.get(group) or {}).get(figure)
    if not found:
        return f"{single:.{digits}f}"
    cell = " / ".join(f"{found[stat]:.{digits}f}" for stat in ("min", "median", "max"))
    if figure in case.get("wide_spread", []):
        cell += f" **(spread {found['relative']:.0%})**"
    return cell


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def case_row(name: str, c: dict[str, Any]) -> list[str]:
    return [
        name, spread_cell(c, "status", c["downtime_status_s"]),
        spread_cell(c, "prober", c["downtime_prober_s"]),
        spread_cell(c, "floor_criu", c["floor_criu_s"]),
        spread_cell(c, "floor_docker", c["floor_docker_s"]),
        spread_cell(c, "final_send", c["final_send_s"]),
        spread_cell(c, "delta", c["delta_bytes"] / 1e6, "spread_mb", digits=1),
        f"{c['bulk_bytes'] / 1e9:.2f}", times(c["of_floor_criu"]), times(c["of_floor_docker"]),
        f"{c['budget_s']:.3f}", f"{c['of_budget']:.2f}",
    ]  # fmt: skip


CASE_HEADERS = [
    "case (size_written)", "downtime, status (s)", "prober gap (s)", "floor: bare CRIU (s)",
    "floor: docker (s)", "final delta send (s)", "delta (MB)", "bulk (GB)",
    "berth / CRIU floor", "berth / docker floor", "budget 1.5 CRIU floor + send (s)",
    "of budget",
]  # fmt: skip


def probing_line(cases: dict[str, Any]) -> str:
    every = {c.get("probe_every_s") for c in cases.values()} - {None}
    interval = ", ".join(f"{e * 1000:.0f}" for e in sorted(every)) or "?"
    return (
        f"The prober runs on host-c, which holds no repository, and asks pulse on both hosts "
        f"every {interval} ms (a connection each, started at a fixed rate)."
    )


def downtime_section(cases: dict[str, Any], ledger: dict[str, Any]) -> list[str]:
    wide = [
        f"{k} ({', '.join(c['wide_spread'])})"
        for k, c in labelled(cases, ledger).items()
        if c.get("wide_spread")
    ]
    step_rows = [
        [k, *[f"{v:.3f}" for _, v in step_breakdown(c["steps_s"])]]
        for k, c in labelled(cases, ledger).items()
    ]
    parts = [
        "## Downtime of pulse (live move through the operator)", "",
        "Each case moves pulse back and forth; every figure is min / median / max over",
        "its moves. The median move (by status) stands for the case: its steps, delta",
        "send and budget are that move's. After each move, with no prober running, two",
        "floors on its target host: a bare `criu dump` + `criu restore` of the same process",
        "trees outside docker, and docker's `checkpoint create` + `start --checkpoint` of",
        "the same containers on the same dockerd. berth / floor is the median downtime",
        f"over the median floor. {probing_line(labelled(cases, ledger))}",
        f"A figure whose repeats spread wider than {SPREAD_LIMIT:.0%} of their median is",
        "marked with its spread.", "",
        table(CASE_HEADERS, [case_row(k, c) for k, c in cases.items()]), "",
    ]  # fmt: skip
    if ledger:
        parts += ledger_section(ledger)
    return [
        *parts,
        "## Downtime by step", "",
        f"Spread wider than {SPREAD_LIMIT:.0%}: " + (", ".join(wide) if wide else "none") + ".",
        "", f"![downtime]({PLOT_LINKS['downtime']})", "", f"![steps]({PLOT_LINKS['steps']})", "",
        "### Steps (agents' own timings, median move)", "",
        table(["case", *[g for g, _ in STEP_GROUPS]], step_rows), "",
    ]  # fmt: skip


def ledger_section(ledger: dict[str, Any]) -> list[str]:
    rows = [[*case_row(k, c), kept_cell(c)] for k, c in ledger.items()]
    lost = [f"- {k}: {problem}" for k, c in ledger.items() for problem in c["ledger_lost"]]
    return [
        "## Downtime of ledger (pulse beside a writer that fsyncs a record every 10 ms)", "",
        "The fault tests' application: one repository, both containers checkpointed. The",
        "status downtime covers both; the prober asks this repository's pulse. After each",
        "move, ledger's file on the target must hold records 1..n with no gap, n at least",
        "the last record it acknowledged.", "",
        table([*CASE_HEADERS, "records"], rows), "", *lost, *([""] if lost else []),
    ]  # fmt: skip


def kept_cell(case: dict[str, Any]) -> str:
    counts = [n for n in case.get("ledger_records", []) if n is not None]
    if case["ledger_lost"]:
        return f"**{len(case['ledger_lost'])} lost or repeated**"
    return f"all kept ({max(counts)} after the last move)" if counts else "all kept"


def operator_figure(figures: dict[str, Any], key: str | tuple[str, str]) -> str:
    got_there = figures.get("all_ready_s") is not None
    if key == "all_ready_s" and not got_there and "ready_at_end_of_startup" in figures:
        return (
            f"{figures['ready_at_end_of_startup']} of {figures.get('placements', '?')} "
            f"Ready after {figures.get('ready_timeout_s', '?')} s"
        )
    if key in ("migrating_max_per_machine", "migrating_max_cluster"):
        limit = figures.get("limit_per_machine" if key.endswith("machine") else "limit_cluster")
        if figures.get(key) is not None:
            return f"{figures[key]} (limit {limit})"
    value = figures.get(key) if isinstance(key, str) else (figures.get(key[0]) or {}).get(key[1])
    if value is None and key == "all_ready_s" and figures.get("error"):
        return "failed"
    return "-" if value is None else str(value)


def _target_value(figures: dict[str, Any], name: str) -> Any:
    if name == "moves_done":  # every move done, and within the per-machine and cluster limits
        done = figures.get("concurrent_moves") or {}
        return bool(done.get("all_moved") and figures.get("moves_within_limits"))
    key, _, sub = name.partition(".")
    return (figures.get(key) or {}).get(sub) if sub else figures.get(key)


def operator_targets(operator: dict[str, Any]) -> dict[str, Any]:
    """Issue 21's targets for the current design at the largest scale measured."""
    runs = [r for r in operator.get("runs", []) if r.get("design") == "current"]
    if not runs:
        return {}
    run = max(runs, key=lambda r: (r.get("placements", 0), r.get("machines", 0)))
    goals: dict[str, Any] = {}
    for name, (target, met) in OPERATOR_TARGETS.items():
        value = _target_value(run, name)
        goals[name] = {"value": value, "target": target, "met": met(value), "scale": run["scale"]}
    return goals


def operator_section(operator: dict[str, Any]) -> list[str]:
    """One column per design and scale (operator_scale.py's runs, in their order), and
    issue 21's targets for the current design at the largest scale."""
    runs = operator.get("runs")
    if runs is None:
        return ["## Operator at scale", "", "Older results: run bench/operator_scale.py again.", ""]
    goals = operator.get("targets") or operator_targets(operator)
    scale = next(iter(goals.values()))["scale"] if goals else None
    rows = []
    for label, key in OPERATOR_ROWS:
        name = key if isinstance(key, str) else ".".join(key)
        cells = [operator_figure(run, key) for run in runs]
        if scale is not None:
            goal = goals.get(name)
            verdict = "met" if goal and goal["met"] else "**not met**"
            cells.append(f"{goal['target']}: {verdict}" if goal else "")
        rows.append([label, *cells])
    headers = ["", *(f"{r.get('design')} {r.get('scale')}" for r in runs)]
    if scale is not None:
        headers.append(f"issue 21 (current {scale})")
    designs = operator.get("designs", {})
    said = [
        f"{name} {d.get('commit', '?')[:12]}"
        + (f" (--baseline-ref {d['ref']})" if d.get("ref") else "")
        + f", heartbeat {d.get('heartbeat_seconds', '?')} s, poll {d.get('poll_seconds', '?')} s"
        for name, d in designs.items()
    ]
    limits = sorted(
        {
            f"{r.get('scale')}: {r.get('concurrent')} moves at once, limits "
            f"{r.get('limit_per_machine')} per machine and {r.get('limit_cluster')} in all"
            for r in runs
        }
    )
    failed = [f"{r.get('design')} {r.get('scale')}: {r['error']}" for r in runs if r.get("error")]
    setup = (
        "Placements x simulated machines (`bench/operator_scale.py`). Designs: "
        + "; ".join(said)
        + ". "
        + "; ".join(limits)
        + ". API requests are the operator's: the API server's own background, measured "
        "with no operator running, is subtracted."
    )
    notes = [f"Failed: {f.splitlines()[0]}" for f in failed]
    rest = [
        f"{r.get('design')} {r.get('scale')}: " + (", ".join(
            f"{request} {rate}/s" for request, rate in sorted(
                (r.get("apiserver_rest") or {}).get("by_request_per_s", {}).items(),
                key=lambda item: -item[1])
            if rate >= 0.1 and request != "PATCH machines/status") or "none")
        for r in runs
    ]  # fmt: skip
    finalizing = any(
        "PATCH repositoryplacements" in (r.get("apiserver_rest") or {}).get("by_request_per_s", {})
        for r in runs
    )
    breakdown = "Requests beyond heartbeats at rest, by kind (0.1/s or more): " + "; ".join(rest)
    breakdown += (
        ". `PATCH repositoryplacements` (not `/status`) is kopf adding its finalizer and "
        "bookkeeping annotation to a placement it has not seen before, once per placement: "
        "every run creates its placements just before the operator starts."
        if finalizing
        else "."
    )
    return [
        "## Operator at scale", "", setup, "", table(headers, rows), "", breakdown, "",
        *[line for note in notes for line in (note, "")],
    ]  # fmt: skip


def _share(share: float | None) -> str:
    """A push's share of its shaped link; an unshaped push has no link to share."""
    return "-" if share is None or math.isnan(share) else f"{share:.0%}"


def summarize_memory(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """memory_bench.py's moves per case: every figure with the spread of its repeats."""
    rows = []
    for case in raw.get("cases", []):
        runs = case["runs"]
        postcopy = [r["postcopy_s"] for r in runs if r.get("postcopy_s") is not None]
        rows.append({
            "resident_mib": case["resident_mib"],
            "dirty_mib_s": case["dirty_mib_s"],
            "mode": case["mode"],
            "moves": len(runs),
            "downtime_status_s": spread([r["downtime_status_s"] for r in runs]),
            "downtime_prober_s": spread([r["downtime_prober_s"] for r in runs]),
            "migration_s": spread([r["migration_s"] for r in runs]),
            "postcopy_s": spread(postcopy),
            "bulk_bytes": spread([float(r["bulk_bytes"]) for r in runs if "bulk_bytes" in r]),
            "delta_bytes": spread([float(r["delta_bytes"]) for r in runs]),
            "postcopy_bytes": spread(
                [float(r["postcopy_bytes"]) for r in runs if r.get("postcopy_s") is not None]
            ),
            "faulted_pages": spread(
                [float(r["postcopy_faulted_pages"]) for r in runs if "postcopy_faulted_pages" in r]
            ),
            "memory_intact": all(r["memory_intact"] for r in runs),
            "failed_moves": len(case.get("failures", [])),
            "median_steps_s": median_move(runs).get("step_seconds", {}) if runs else {},
        })  # fmt: skip
    return rows


def median_move(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The move whose status downtime is the median (the lower of the middle two)."""
    ordered = sorted(runs, key=lambda r: r["downtime_status_s"])
    return ordered[(len(ordered) - 1) // 2]


def memory_note(key: str, goal: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Why a post-copy downtime target was missed: what pulse alone took in the same run,
    and where the median move's downtime went."""
    mib, dirty = (1024, 50) if key == "memory_1g_busy" else (1024, 0)
    row = next(
        (r for r in rows if (r["resident_mib"], r["dirty_mib_s"]) == (mib, dirty)
         and r["mode"] in ("postcopy", "auto")), None,
    )  # fmt: skip
    alone = next((r for r in rows if r["resident_mib"] == 0), None)
    text = f"- `{key}`: median {goal['value']:.3f} s (target <= {goal['target']} s)."
    if alone and alone["downtime_status_s"]:
        baseline = alone["downtime_status_s"]["median"]
        where = "already over" if baseline > goal["target"] else "itself within"
        text += (
            f" Pulse alone, moved in the same run without the memory app: {baseline:.3f} s, "
            f"{where} the target."
        )
    steps = row.get("median_steps_s") if row else None
    if steps:
        docker = docker_seconds(steps)
        text += (
            f" Of the median move docker spends {sum(docker.values()):.3f} s: its "
            f"checkpoint {docker['checkpoint']:.3f} s (the lazy dump of the memory app "
            f"beside pulse's plain one), the target dockerd's start {docker['dockerd']:.3f} s,"
            f" its restore {docker['restore']:.3f} s (two containers restored side by side)."
        )
    return text + (
        " The memory itself is no longer in the downtime (post-copy); what is left is "
        "docker 20.10's checkpoint and restore path, as for pulse above, plus 0.15-0.25 s "
        "for the target dockerd removing the post-copy container's stale network sandbox."
    )


def memory_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 19: post-copy downtime of 1 GiB <= 1.0 s, busy 1 GiB <= 1.5 s, 4 GiB within
    20 % of 256 MiB; every move with its memory intact."""
    found: dict[str, Any] = {}

    def median(mib: int, dirty: int) -> float | None:
        for row in rows:
            if (row["resident_mib"], row["dirty_mib_s"]) == (mib, dirty) and row["mode"] in (
                "postcopy",
                "auto",
            ):
                return float(row["downtime_status_s"]["median"])
        return None

    for key, mib, dirty, limit in (("memory_1g", 1024, 0, 1.0), ("memory_1g_busy", 1024, 50, 1.5)):
        value = median(mib, dirty)
        if value is not None:
            found[key] = verdict(value, limit, value <= limit)
    small, large = median(256, 0), median(4096, 0)
    if small and large:
        growth = large / small - 1
        found["memory_4g_vs_256m"] = verdict(round(growth, 3), 0.2, growth < 0.2)
    if rows:
        intact = all(row["memory_intact"] for row in rows)
        found["memory_intact"] = verdict(1.0 if intact else 0.0, 1.0, intact)
    return found


def memory_section(rows: list[dict[str, Any]], commit: str | None = None) -> list[str]:
    def cell(s: dict[str, float] | None, scale: float = 1.0, digits: int = 3) -> str:
        if not s:
            return "-"
        f = f"{{:.{digits}f}}"
        text = " / ".join(f.format(s[k] / scale) for k in ("min", "median", "max"))
        return text + (" ⚠" if s["relative"] > SPREAD_LIMIT else "")

    alone = next((r for r in rows if r["resident_mib"] == 0), None)

    def of_alone(row: dict[str, Any]) -> str:
        if alone is None or not alone["downtime_status_s"]:
            return "-"
        return f"{row['downtime_status_s']['median'] / alone['downtime_status_s']['median']:.2f}"

    table_rows = [
        [str(r["resident_mib"] or "pulse alone"), str(r["dirty_mib_s"]), r["mode"],
         str(r["moves"]), cell(r["downtime_status_s"]), of_alone(r), cell(r["downtime_prober_s"]),
         cell(r["migration_s"], digits=1), cell(r["postcopy_s"], digits=2),
         cell(r["delta_bytes"], 1e6, 1), cell(r.get("postcopy_bytes"), 1e6, 0),
         cell(r.get("faulted_pages"), digits=0), "yes" if r["memory_intact"] else "**no**",
         str(r.get("failed_moves", 0))]
        for r in rows
    ]  # fmt: skip
    return [
        "## Memory-heavy containers", "",
        "`bench/memory_bench.py`: a container holding random bytes in RAM (and re-checking",
        "their checksum) beside pulse, moved between host-a and host-b with `spec.memory`",
        "`freeze` (every page dumped and sent inside the freeze) and `postcopy` or `auto`",
        "(pages follow after it, CRIU lazy pages; `auto` only for the memory app), side by",
        "side in one run. Each cell: min / median / max of the moves; ⚠ marks a spread over",
        "30 % of the median. Downtime from status and from the prober on host-c; migration:",
        "startedAt to finishedAt; post-copy: from the target's answer until it held every",
        "page, the MB it received then, and the pages the app touched before they had",
        "arrived (faulted: each waited for the source). \"pulse alone\" is the same move",
        "without the memory app; \"of pulse alone\" divides each median downtime by its."
        + (f" Measured at commit `{commit}`, in a run of its own." if commit else ""), "",
        table(["resident MiB", "dirty MiB/s", "memory", "moves", "downtime s (status)",
               "of pulse alone", "downtime s (prober)", "migration s", "post-copy s",
               "final delta MB", "post-copy MB", "faulted pages", "memory intact",
               "rolled back"],
              table_rows), "",
    ]  # fmt: skip


def performance_markdown(latest: dict[str, Any]) -> str:
    """docs/performance.md from latest.json's content."""
    parts = [
        "# Performance", "",
        "The benchmarks' latest figures, written by `bench/report.py` at the end of",
        "`bash bench/run.sh` (what each benchmark measures: `bench/README.md`; every figure",
        "under stable keys, for scripts: `bench/results/latest.json`).", "",
        measured_line(latest.get("measured", {})), "",
    ]  # fmt: skip
    goals = latest.get("targets", {})
    if goals:
        parts += targets_section(goals, latest)
    cases, ledger = latest.get("downtime", {}), latest.get("ledger", {})
    if cases or ledger:
        parts += downtime_section(cases, ledger)
    memory = latest.get("memory")
    if memory:
        parts += [
            "## Memory-heavy container", "",
            f"{memory['ram_mib']} MiB in RAM: downtime {memory['downtime_status_s']:.3f} s, "
            f"final delta {memory['delta_bytes'] / 1e6:.0f} MB; CRIU lazy pages: "
            f"{memory.get('lazy_pages', '?')}.", "",
        ]  # fmt: skip
    if latest.get("memory_cases"):
        parts += memory_section(latest["memory_cases"], latest.get("memory_commit"))
        if latest.get("memory_note"):
            parts += [f"Note: {latest['memory_note']}.", ""]
    if latest.get("database_cases"):
        parts += databases_section(latest["database_cases"], latest.get("database_commits", []))
    pushes = latest.get("throughput", [])
    if pushes:
        rows = [[p["bandwidth"], f"{p['bytes'] / 1e9:.2f}", f"{p['seconds']:.2f}",
                 f"{p['bytes_per_s'] / 1e6:.1f}", _share(p.get("share_of_link"))]
                for p in pushes]  # fmt: skip
        parts += ["## Bulk throughput (full push)", "",
                  table(["link", "GB", "s", "MB/s", "share of link"], rows), ""]  # fmt: skip
    transfer = latest.get("transfer")
    if transfer:
        rows = [[k, f"{v:.3f}"] for k, v in transfer.items()]
        parts += ["## Delta transfer vs rsync, full push vs a copy", "",
                  "Ratios; lower is better for berth.", "",
                  table(["ratio", "value"], rows), ""]  # fmt: skip
    operator = latest.get("operator")
    if operator:
        parts += operator_section(operator)
    return "\n".join(parts)


def docker_seconds(steps: dict[str, float]) -> dict[str, float]:
    """The parts of a downtime that docker spends, not berth: its checkpoint, the target
    dockerd's start, and its restore. A repository's containers are checkpointed and
    restored all at once, so each part lasts as long as its slowest container."""
    pick = {"checkpoint": "freeze.checkpoint", "dockerd": "up.dockerd", "restore": "up.restore"}
    return {
        name: max((v for k, v in steps.items() if k.startswith(prefix)), default=0.0)
        for name, prefix in pick.items()
    }


def missed_notes(latest: dict[str, Any]) -> list[str]:
    """A paragraph per missed target, from this run's own figures."""
    goals, notes = latest.get("targets", {}), []
    for workload, section in (("pulse", "downtime"), ("ledger", "ledger")):
        prefix = f"{workload}_{TARGET_CASE}_"
        missed = [k for k, g in goals.items() if k.startswith(prefix) and not g["met"]]
        case = latest.get(section, {}).get(TARGET_CASE)
        if missed and case:
            notes.append(downtime_note(f"{workload} {TARGET_CASE}", case, missed))
    for key, goal in goals.items():
        if key.startswith("growth_") and not goal["met"]:
            notes.append(growth_note(key, goal))
    for key in ("memory_1g", "memory_1g_busy"):
        goal = goals.get(key)
        if goal and not goal["met"] and goal["value"] is not None:
            notes.append(memory_note(key, goal, latest.get("memory_cases", [])))
    goal = goals.get("within_floor_budget")
    if goal and not goal["met"]:
        notes.append(
            f"- `within_floor_budget`: worst case {goal['worst_case']} at "
            f"{goal['value']:.2f} of its budget (1.5 x its bare-CRIU floor + its final "
            "delta's send time)."
        )
    goal = goals.get("ledger_nothing_lost")
    if goal and not goal["met"]:
        notes.append(
            f"- `ledger_nothing_lost`: {goal['value']} records lost or repeated; the ledger "
            "table lists them. A move that loses an acknowledged write is a bug, not a figure."
        )
    goal = goals.get("bulk_share_of_1gbit")
    if goal and not goal["met"]:
        notes.append(
            f"- `bulk_share_of_1gbit`: {goal['value']:.0%} of the shaped link (target "
            f"{goal['target']:.0%})."
        )
    return notes


def downtime_note(name: str, case: dict[str, Any], missed: list[str]) -> str:
    """Where a case's median move spent its downtime, next to both floors."""
    status, prober = case["spread_s"]["status"], case["spread_s"].get("prober")
    seen = (
        f"; by prober median {prober['median']:.3f} s, slowest {prober['max']:.3f} s"
        if prober
        else "; the prober followed no move"
    )
    docker = docker_seconds(case["steps_s"])
    berth = case["downtime_status_s"] - sum(docker.values())
    return (
        f"- `{name}` ({', '.join(f'`{m}`' for m in missed)} missed): by status median "
        f"{status['median']:.3f} s, slowest {status['max']:.3f} s{seen} (targets: median "
        f"<= {DOWNTIME_MEDIAN_TARGET_S} s, every move <= {DOWNTIME_MAX_TARGET_S} s). Of the "
        f"median move docker spends {sum(docker.values()):.3f} s: its checkpoint "
        f"{docker['checkpoint']:.3f} s, the target dockerd's start {docker['dockerd']:.3f} s, "
        f"its restore {docker['restore']:.3f} s; berth's own part (final delta, mount, "
        f"neighbours, answer, the operator's calls) is {berth:.3f} s. The floors in this run: "
        f"a bare CRIU dump + restore of the same trees {case['floor_criu_s']:.3f} s, docker's "
        f"checkpoint + start {case['floor_docker_s']:.3f} s. berth already dumps with runc "
        "directly; the restore is still `docker start --checkpoint`, which creates the "
        "container in containerd, packs the checkpoint into containerd's content store and "
        "unpacks it again, starts a shim, and runs docker's network hook inside CRIU's "
        "restore (0.16 s of it: two re-executions of dockerd and the embedded DNS "
        "resolver's iptables rules). What would close the gap: a restore docker adopts "
        "without its start path, and the target's dockerd started while the source dumps "
        "(it can only start once the final delta is in, while its data-root is in the "
        "image)."
    )


def growth_note(key: str, goal: dict[str, Any]) -> str:
    if goal.get("faster_as_it_grows"):
        return (
            f"- `{key}`: the 8 GiB repository's median downtime is {-goal['value']:.0%} "
            "below the 1 GiB one's. A repository does not get faster as it grows: a "
            "measurement to explain (compare both cases' spreads and steps), not a target met."
        )
    return (
        f"- `{key}`: downtime grew {goal['value']:.0%} from 1 to 8 GiB (target "
        f"< {goal['target']:.0%}); see the steps table for which step grew."
    )


def git(root: Path, *args: str) -> str:
    # run.sh runs as root in a checkout another user may own: without safe.directory git
    # refuses it ("dubious ownership").
    command = ["git", "-c", f"safe.directory={root}", "-C", str(root), *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def commit_label(root: Path) -> str:
    """The short commit, with "+dirty" when tracked files differ from it. The report's own
    outputs do not count: the last run's figures, not yet committed, change no code."""
    try:
        short = git(root, "rev-parse", "--short", "HEAD")
        excluded = [f":(exclude){path}" for path in OUTPUTS]
        changed = git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return short + ("+dirty" if changed else "")


def memory_gib(meminfo: str) -> float | None:
    found = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    return round(int(found.group(1)) / 2**20, 1) if found else None


def cpu_model(cpuinfo: str) -> str | None:
    found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return found.group(1).strip() if found else None


def stamp(suite: str) -> dict[str, Any]:
    """What is about to be measured: the code, when, and on what machine."""
    return {
        "commit": commit_label(ROOT),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "suite": suite,
        "machine": {
            "nproc": len(os.sched_getaffinity(0)),  # what `nproc` says
            "cpu": cpu_model(Path("/proc/cpuinfo").read_text()),
            "memory_gib": memory_gib(Path("/proc/meminfo").read_text()),
            "kernel": platform.release(),
        },
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stamp", action="store_true", help="record the commit, date, machine")
    parser.add_argument("--suite", choices=["full", "quick"], default="full", help="with --stamp")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep latest.json's figures of the benchmarks whose results are not here (one "
        "benchmark run again alone: operator_scale.py, say)",
    )
    args = parser.parse_args(argv)
    if args.stamp:
        RESULTS.mkdir(parents=True, exist_ok=True)
        STAMP.write_text(json.dumps(stamp(args.suite), indent=2) + "\n")
        print(f"wrote {STAMP}")
        return 0
    latest: dict[str, Any] = {}
    downtime = load("downtime")
    if downtime:
        latest["started"] = downtime.get("started")
        latest["downtime"] = summarize_downtime(downtime, "pulse")
        ledger = summarize_downtime(downtime, "ledger")
        if ledger:
            latest["ledger"] = ledger
        latest["memory"] = downtime.get("memory")
        latest["throughput"] = downtime.get("throughput", [])
        latest["targets"] = targets(latest["downtime"], downtime, ledger)
    memory_raw = load("memory")
    if memory_raw:
        latest["memory_cases"] = summarize_memory(memory_raw)
        latest["memory_commit"] = memory_raw.get("commit")
        latest["memory_note"] = memory_raw.get("note")
        latest.setdefault("targets", {}).update(memory_targets(latest["memory_cases"]))
    databases = load("databases")
    if databases:
        latest["database_cases"] = summarize_databases(databases)
        latest["database_commits"] = [databases.get("commit")]
        large = load("databases_large")  # database_bench.py --results databases_large
        if large:
            latest["database_cases"] += summarize_databases(large)
            latest["database_commits"].append(large.get("commit"))
    operator = load("operator_scale")
    if operator:
        latest["operator"] = operator.get("operator", operator)
    transfer = load("transfer")
    if transfer:
        latest["transfer"] = transfer.get("ratios")
    if not latest:
        print("no results in bench/results: run the benchmarks first", file=sys.stderr)
        return 1
    kept_stamp = None
    if args.keep and LATEST.exists():
        kept = json.loads(LATEST.read_text())
        kept_stamp = kept.pop("measured", None)  # the suite's; each section names its commit
        latest = {**kept, **latest}
    if STAMP.exists():
        measured = json.loads(STAMP.read_text())
    elif kept_stamp:
        measured = kept_stamp
    else:
        print(f"no {STAMP} (bench/run.sh writes it before measuring): stamped now", file=sys.stderr)
        measured = stamp("unknown")
    latest = {"measured": measured, **latest}
    cases, ledger = latest.get("downtime", {}), latest.get("ledger", {})
    if cases or ledger:
        plot_downtime(cases, ledger, PLOTS / "downtime.png")
        plot_steps(labelled(cases, ledger), PLOTS / "steps.png")
    page = performance_markdown(latest) + "\n"
    LATEST.write_text(json.dumps(latest, indent=2) + "\n")
    PAGE.write_text(page)
    print(page)
    print(f"wrote {LATEST}, {PAGE} and the plots in {PLOTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
