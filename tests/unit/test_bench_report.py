"""bench/report.py: docs/performance.md from a results dict, and the commit it names."""

import subprocess
from pathlib import Path
from typing import Any

import pytest

from report import (
    PAGE,
    PLOT_LINKS,
    PLOTS,
    commit_label,
    performance_markdown,
    summarize_downtime,
    targets,
)

pytestmark = pytest.mark.unit

MEASURED = {
    "commit": "abc1234+dirty",
    "date": "2025-01-02T03:04:05Z",
    "suite": "quick",
    "machine": {"nproc": 2, "cpu": "Test CPU", "memory_gib": 7.8, "kernel": "6.1.0-test"},
}


def raw_downtime() -> dict[str, Any]:
    """downtime_bench.py's output for one case over its 1 s target, and a push."""
    steps = {
        "freeze.checkpoint:pulse": 0.4,
        "final.send": 0.1,
        "up.mount": 0.05,
        "up.dockerd": 0.3,
        "up.restore:pulse": 0.3,
        "up.answer": 0.05,
    }
    case = {
        "repository_gib": 2,
        "written_during_bulk_mib": 50,
        "downtime_status_s": 1.25,
        "downtime_prober_s": 1.3,
        "runs": [
            {"downtime_status_s": 1.2, "downtime_prober_s": 1.3, "prober_followed": True},
            {"downtime_status_s": 1.25, "downtime_prober_s": 1.9, "prober_followed": True},
        ],
        "floor": {"total": 0.6},
        "floors": [{"total": 0.6}, {"total": 0.62}],
        "delta_bytes": 52_000_000,
        "bulk_bytes": 1_600_000_000,
        "step_seconds": steps,
    }
    push = {
        "bandwidth": "1gbit",
        "bytes": 2_000_000_000,
        "seconds": 17.0,
        "bytes_per_s": 117_000_000,
        "share_of_link": 0.94,
    }
    return {"pulse": [case], "throughput": [push]}


def test_performance_page_shows_the_stamp_targets_tables_and_plots() -> None:
    raw = raw_downtime()
    cases = summarize_downtime(raw)
    latest = {
        "measured": MEASURED,
        "downtime": cases,
        "throughput": raw["throughput"],
        "targets": targets(cases, raw),
        "transfer": {"delta_bytes_over_change": 1.012},
    }
    page = performance_markdown(latest)

    assert "Measured at commit `abc1234+dirty` on 2025-01-02T03:04:05Z (UTC)" in page
    assert "quick suite, on 2 CPUs (Test CPU), 7.8 GiB of memory, Linux 6.1.0-test" in page
    # 1.25 s misses the 1 s target; 0.94 of the link meets 0.9; 1.25 of 1.5*0.6+0.1 is over.
    assert "1 of 3 met." in page
    assert "| downtime_2g_50m | 1.25 | 1.0 | **not met** |" in page
    assert "| bulk_share_of_1gbit | 0.94 | 0.9 | met |" in page
    assert "| within_floor_budget | 1.25 | 1.0 | **not met** |" in page
    assert "- `downtime_2g_50m`: 1.250 s, 0.250 s over 1.0 s." in page
    # Every figure as min / median / max of its repeats; the prober's spread (0.6 s over a
    # median of 1.6 s) is over 30 %, so it is marked and listed.
    assert (
        "| 2g_50m | 1.200 / 1.225 / 1.250 | 1.300 / 1.600 / 1.900 **(spread 38%)** "
        "| 0.600 / 0.610 / 0.620 | 0.100 | 52.0 | 1.60 | 1.000 |"
    ) in page
    assert "Spread wider than 30%: 2g_50m (prober)." in page
    assert "| 1gbit | 2.00 | 17.00 | 117.0 | 94% |" in page
    assert "| delta_bytes_over_change | 1.012 |" in page
    # The plots are linked where report.py saves them, relative to the page.
    for name, link in PLOT_LINKS.items():
        assert f"![{name}]({link})" in page
        assert PAGE.parent / link == PLOTS / f"{name}.png"


def test_performance_page_leaves_out_what_was_not_measured() -> None:
    operator = {
        "placements": 100,
        "machines": 5,
        "concurrent": 10,
        "settings": {"poll_seconds": 5, "heartbeat_seconds": 10, "variants": {"after": {}}},
        "all_ready_s": 12.5,
        "patch_to_first_phase_s": {"median": 0.8},
    }
    page = performance_markdown({"measured": MEASURED, "operator": operator})

    assert "| all Ready after start (s) | 12.5 |" in page
    assert "| patch -> first phase, median (s) | 0.8 |" in page
    assert "| patch -> first phase, max (s) | - |" in page
    for absent in ("## Targets", "## Downtime", "![", "## Bulk throughput", "## Delta transfer"):
        assert absent not in page


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_commit_label_is_dirty_only_when_code_differs(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "performance.md").write_text("old figures\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    short = git(tmp_path, "rev-parse", "--short", "HEAD")
    assert commit_label(tmp_path) == short

    # The last run's figures, not yet committed, and untracked files change no code.
    (tmp_path / "docs" / "performance.md").write_text("new figures\n")
    (tmp_path / "scratch.txt").write_text("notes\n")
    assert commit_label(tmp_path) == short

    (tmp_path / "code.py").write_text("x = 2\n")
    assert commit_label(tmp_path) == f"{short}+dirty"
