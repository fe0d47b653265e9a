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
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
DOWNTIME_TARGET_S = 1.0  # 2 GiB repository, 50 MiB written during bulk
GROWTH_TARGET = 0.10  # downtime from 1 GiB to 8 GiB
FLOOR_FACTOR = 1.5
LINK_SHARE_TARGET = 0.90
# A case whose repeats spread wider than this share of their median says more about the
# machine's noise than about berth (2 shared cores): flagged, not averaged away.
SPREAD_LIMIT = 0.30
# operator_scale.py's figures, in its summary and on the page: (label, key or (key, sub)).
OPERATOR_ROWS: list[tuple[str, str | tuple[str, str]]] = [
    ("all Ready after start (s)", "all_ready_s"),
    ("most Ready at once during start", "ready_most_during_startup"),
    ("Stalled on the way during start", "stalled_during_startup"),
    ("API server 429s during start", "apiserver_rejected_429_during_startup"),
    ("RSS at rest (MiB)", "rss_mib_rest"),
    ("CPU at rest (% of a core)", "cpu_percent_rest"),
    ("agent requests/s at rest", "agent_requests_per_s_rest"),
    ("agent TLS connections/s at rest", "agent_connections_per_s_rest"),
    ("API server requests/s at rest", "apiserver_requests_per_s_rest"),
    ("API server 429s/s at rest", "apiserver_rejected_429_per_s_rest"),
    ("RSS migrating (MiB, peak)", "rss_mib_migrating"),
    ("CPU migrating (% of a core)", "cpu_percent_migrating"),
    ("agent requests/s migrating", "agent_requests_per_s_migrating"),
    ("patch -> first phase, single (s)", ("patch_to_first_phase_s", "single")),
    ("patch -> first phase, median (s)", ("patch_to_first_phase_s", "median")),
    ("patch -> first phase, max (s)", ("patch_to_first_phase_s", "max")),
    ("patch -> Ready, concurrent max (s)", ("patch_to_ready_s", "concurrent_max")),
]


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def final_delta_seconds(steps: dict[str, float]) -> float:
    return sum(v for k, v in steps.items() if k.startswith("final."))


def case_key(case: dict[str, Any]) -> str:
    return f"{case['repository_gib']}g_{case['written_during_bulk_mib']}m"


def spread(values: list[float]) -> dict[str, float] | None:
    """min, median and max of a figure's repeats, and (max - min) / median."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    relative = (ordered[-1] - ordered[0]) / median if median else 0.0
    return {
        "min": round(ordered[0], 3),
        "median": round(median, 3),
        "max": round(ordered[-1], 3),
        "relative": round(relative, 3),
    }


def wide_spreads(spreads: dict[str, dict[str, float] | None]) -> list[str]:
    """The figures whose repeats spread wider than SPREAD_LIMIT of their median."""
    return [name for name, s in spreads.items() if s and s["relative"] > SPREAD_LIMIT]


def summarize_downtime(raw: dict[str, Any]) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for case in raw.get("pulse", []):
        steps = case["step_seconds"]
        delta_s = final_delta_seconds(steps)
        floor = case["floor"]["total"]
        runs = case.get("runs", [])
        spreads = {
            "status": spread([r["downtime_status_s"] for r in runs]),
            "prober": spread([r["downtime_prober_s"] for r in runs if r.get("prober_followed")]),
            "floor": spread([f["total"] for f in case.get("floors", [])]),
        }
        cases[case_key(case)] = {
            "spread_s": spreads,
            "wide_spread": wide_spreads(spreads),
            "downtime_status_s": case["downtime_status_s"],
            "downtime_prober_s": case["downtime_prober_s"],
            "downtime_runs_s": [r["downtime_status_s"] for r in case.get("runs", [])],
            "floor_s": round(floor, 3),
            "final_delta_s": round(delta_s, 3),
            "delta_bytes": case["delta_bytes"],
            "bulk_bytes": case["bulk_bytes"],
            # The target: downtime <= 1.5 x floor + the final delta's transfer time.
            "budget_s": round(FLOOR_FACTOR * floor + delta_s, 3),
            "of_budget": round(case["downtime_status_s"] / (FLOOR_FACTOR * floor + delta_s), 3),
            "steps_s": steps,
        }
    return cases


def targets(cases: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "2g_50m" in cases:
        value = cases["2g_50m"]["downtime_status_s"]
        out["downtime_2g_50m"] = verdict(value, DOWNTIME_TARGET_S, value <= DOWNTIME_TARGET_S)
    for write in sorted({k.split("_")[1] for k in cases}):
        small, large = cases.get(f"1g_{write}"), cases.get(f"8g_{write}")
        if small and large:
            growth = large["downtime_status_s"] / small["downtime_status_s"] - 1
            out[f"growth_1g_to_8g_{write}"] = verdict(growth, GROWTH_TARGET, growth < GROWTH_TARGET)
    worst = max(cases.items(), key=lambda kv: kv[1]["of_budget"], default=None)
    if worst:
        ratio = worst[1]["of_budget"]
        out["within_floor_budget"] = {
            **verdict(ratio, 1.0, ratio <= 1.0),
            "worst_case": worst[0],
        }
    for push in raw.get("throughput", []):
        if "share_of_link" in push:
            share = push["share_of_link"]
            out["bulk_share_of_1gbit"] = verdict(
                share, LINK_SHARE_TARGET, share >= LINK_SHARE_TARGET
            )
    return out


def verdict(value: float, target: float, met: bool) -> dict[str, Any]:
    return {"value": round(value, 3), "target": target, "met": met}


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


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


def plot_downtime(cases: dict[str, Any], path: Path) -> None:
    sizes = sorted({int(k.split("g_")[0]) for k in cases})
    writes = sorted({int(k.split("_")[1][:-1]) for k in cases})
    fig, ax = new_figure(7, 4)
    for write in writes:
        got = [cases.get(f"{s}g_{write}m") for s in sizes]
        xs = [s for s, c in zip(sizes, got, strict=True) if c]
        ax.plot(xs, [c["downtime_status_s"] for c in got if c], "o-",
                label=f"status, {write} MiB written")  # fmt: skip
        ax.plot(xs, [c["downtime_prober_s"] for c in got if c], "x--",
                label=f"prober, {write} MiB written")  # fmt: skip
    ax.axhline(DOWNTIME_TARGET_S, color="grey", linestyle=":", label="target 1 s")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{s} GiB" for s in sizes])
    ax.set_xlabel("repository size")
    ax.set_ylabel("downtime (s)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title("pulse: downtime of a live move")
    save(fig, path)


STEP_GROUPS = [
    ("freeze (CRIU dump)", "freeze."),
    ("final delta", "final."),
    ("mount", "up.mount"),
    ("dockerd start", "up.dockerd"),
    ("restore (CRIU)", "up.restore"),
    ("neighbours, services, answer", "up."),
]


def step_breakdown(steps: dict[str, float]) -> list[tuple[str, float]]:
    used: set[str] = set()
    out = []
    for label, prefix in STEP_GROUPS:
        keys = [k for k in steps if k.startswith(prefix) and k not in used]
        used.update(keys)
        out.append((label, sum(steps[k] for k in keys)))
    return out


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
    ax.plot(names, [cases[n]["floor_s"] for n in names], "r*", label="floor: checkpoint+restore")
    ax.set_ylabel("seconds")
    ax.set_title("downtime by step, next to the floor (same run)")
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
    rows = [[k, str(v["value"]), str(v["target"]), "met" if v["met"] else "**not met**"]
            for k, v in goals.items()]  # fmt: skip
    parts = [
        "## Targets", "", f"{met} of {len(goals)} met.", "",
        table(["target", "value", "target", "verdict"], rows), "",
    ]  # fmt: skip
    notes = missed_notes(latest)
    if notes:
        parts += ["### Not met: by how much, why, and what would close it", "", *notes, ""]
    return parts


def spread_cell(case: dict[str, Any], figure: str, single: float) -> str:
    """min / median / max of a figure's repeats, marked when they spread too wide; the
    single value where a result predates the repeats."""
    found = (case.get("spread_s") or {}).get(figure)
    if not found:
        return f"{single:.3f}"
    cell = f"{found['min']:.3f} / {found['median']:.3f} / {found['max']:.3f}"
    if figure in case.get("wide_spread", []):
        cell += f" **(spread {found['relative']:.0%})**"
    return cell


def downtime_section(cases: dict[str, Any]) -> list[str]:
    rows = [
        [k, spread_cell(c, "status", c["downtime_status_s"]),
         spread_cell(c, "prober", c["downtime_prober_s"]),
         spread_cell(c, "floor", c["floor_s"]), f"{c['final_delta_s']:.3f}",
         f"{c['delta_bytes'] / 1e6:.1f}", f"{c['bulk_bytes'] / 1e9:.2f}", f"{c['budget_s']:.3f}",
         f"{c['of_budget']:.2f}"]
        for k, c in cases.items()
    ]  # fmt: skip
    wide = [
        f"{k} ({', '.join(c['wide_spread'])})" for k, c in cases.items() if c.get("wide_spread")
    ]
    step_rows = [
        [k, *[f"{v:.3f}" for _, v in step_breakdown(c["steps_s"])]] for k, c in cases.items()
    ]
    return [
        "## Downtime of pulse (live move through the operator)", "",
        "Each case moves pulse back and forth; every figure is min / median / max over",
        "its moves. The median move stands for the case: its steps, delta and budget are",
        "that move's. The floor is one bare checkpoint and restore after each move.",
        f"A figure whose repeats spread wider than {SPREAD_LIMIT:.0%} of their median is",
        "marked with its spread.", "",
        table(["case (size_written)", "downtime, status (s)", "prober gap (s)", "floor (s)",
               "final delta (s)", "delta (MB)", "bulk (GB)", "budget 1.5 floor + delta (s)",
               "of budget"], rows), "",
        f"Spread wider than {SPREAD_LIMIT:.0%}: " + (", ".join(wide) if wide else "none") + ".",
        "", f"![downtime]({PLOT_LINKS['downtime']})", "", f"![steps]({PLOT_LINKS['steps']})", "",
        "### Steps (agents' own timings)", "",
        table(["case", *[g for g, _ in STEP_GROUPS]], step_rows), "",
    ]  # fmt: skip


def operator_figure(figures: dict[str, Any], key: str | tuple[str, str]) -> str:
    value = figures.get(key) if isinstance(key, str) else (figures.get(key[0]) or {}).get(key[1])
    return "-" if value is None else str(value)


def operator_section(operator: dict[str, Any]) -> list[str]:
    """One column per variant of the operator's settings; the last variant's figures sit
    at the top level, earlier ones under their names (operator_scale.py)."""
    settings = operator.get("settings", {})
    variants = list(settings.get("variants", {})) or ["figures"]
    columns = {v: operator if v == variants[-1] else operator.get(v, {}) for v in variants}
    rows = [
        [label, *(operator_figure(columns[v], key) for v in variants)]
        for label, key in OPERATOR_ROWS
    ]
    setup = (
        f"{operator.get('placements', '?')} placements on {operator.get('machines', '?')} "
        f"simulated machines, {operator.get('concurrent', '?')} concurrent moves; poll "
        f"{settings.get('poll_seconds', '?')} s, heartbeat "
        f"{settings.get('heartbeat_seconds', '?')} s."
    )
    return ["## Operator at scale", "", setup, "", table(["", *variants], rows), ""]


def _share(share: float | None) -> str:
    """A push's share of its shaped link; an unshaped push has no link to share."""
    return "-" if share is None or math.isnan(share) else f"{share:.0%}"


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
    cases = latest.get("downtime", {})
    if cases:
        parts += downtime_section(cases)
    memory = latest.get("memory")
    if memory:
        parts += [
            "## Memory-heavy container", "",
            f"{memory['ram_mib']} MiB in RAM: downtime {memory['downtime_status_s']:.3f} s, "
            f"final delta {memory['delta_bytes'] / 1e6:.0f} MB; CRIU lazy pages: "
            f"{memory.get('lazy_pages', '?')}.", "",
        ]  # fmt: skip
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
    dockerd's start, and its restore."""
    pick = {"checkpoint": "freeze.checkpoint", "dockerd": "up.dockerd", "restore": "up.restore"}
    return {
        name: sum(v for k, v in steps.items() if k.startswith(prefix))
        for name, prefix in pick.items()
    }


def missed_notes(latest: dict[str, Any]) -> list[str]:
    """A paragraph per missed target, from this run's own figures."""
    goals, cases, notes = latest.get("targets", {}), latest.get("downtime", {}), []
    goal = goals.get("downtime_2g_50m")
    if goal and not goal["met"]:
        case = cases["2g_50m"]
        docker = docker_seconds(case["steps_s"])
        berth = case["downtime_status_s"] - sum(docker.values())
        notes.append(
            f"- `downtime_2g_50m`: {goal['value']:.3f} s, {goal['value'] - goal['target']:.3f} s "
            f"over {goal['target']} s. Docker spends {sum(docker.values()):.3f} s of it: its "
            f"checkpoint {docker['checkpoint']:.3f} s, the target dockerd's start "
            f"{docker['dockerd']:.3f} s, its restore {docker['restore']:.3f} s; berth's own "
            f"part (final delta, mount, neighbours, answer, the operator's calls) is "
            f"{berth:.3f} s. The floor (checkpoint + restore in one running dockerd) was "
            f"{case['floor_s']:.3f} s in this run. Background, measured apart on these "
            "machines (not by this run): CRIU's own logs put its "
            "dump at ~0.15 s and its restore at ~0.30 s (0.2 s of which is docker's "
            "libnetwork prestart hook re-executing dockerd); the rest is docker 20.10 "
            "packing the checkpoint into containerd's content store and back. What would "
            "close it: restore through containerd/runc directly instead of `docker start "
            "--checkpoint` (saves docker's packing, ~0.2 s each way). The dockerd start "
            "is the price of a daemon per repository whose data lives in the image: it "
            "can only start once the final delta is in."
        )
    for key, goal in goals.items():
        if key.startswith("growth_") and not goal["met"]:
            notes.append(
                f"- `{key}`: downtime grew {goal['value']:.0%} from 1 to 8 GiB (target "
                f"< {goal['target']:.0%}); see the steps table for which step grew."
            )
    goal = goals.get("within_floor_budget")
    if goal and not goal["met"]:
        notes.append(
            f"- `within_floor_budget`: worst case {goal['worst_case']} at "
            f"{goal['value']:.2f} of its budget."
        )
    goal = goals.get("bulk_share_of_1gbit")
    if goal and not goal["met"]:
        notes.append(
            f"- `bulk_share_of_1gbit`: {goal['value']:.0%} of the shaped link (target "
            f"{goal['target']:.0%})."
        )
    return notes


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
        latest["downtime"] = summarize_downtime(downtime)
        latest["memory"] = downtime.get("memory")
        latest["throughput"] = downtime.get("throughput", [])
        latest["targets"] = targets(latest["downtime"], downtime)
    operator = load("operator_scale")
    if operator:
        latest["operator"] = operator.get("operator", operator)
    transfer = load("transfer")
    if transfer:
        latest["transfer"] = transfer.get("ratios")
    if not latest:
        print("no results in bench/results: run the benchmarks first", file=sys.stderr)
        return 1
    if STAMP.exists():
        measured = json.loads(STAMP.read_text())
    else:
        print(f"no {STAMP} (bench/run.sh writes it before measuring): stamped now", file=sys.stderr)
        measured = stamp("unknown")
    latest = {"measured": measured, **latest}
    if latest.get("downtime"):
        plot_downtime(latest["downtime"], PLOTS / "downtime.png")
        plot_steps(latest["downtime"], PLOTS / "steps.png")
    page = performance_markdown(latest) + "\n"
    LATEST.write_text(json.dumps(latest, indent=2) + "\n")
    PAGE.write_text(page)
    print(page)
    print(f"wrote {LATEST}, {PAGE} and the plots in {PLOTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
