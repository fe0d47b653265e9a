"""Test-only crash points: they fire once, only at the point named, and only when set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from berth_common.crash import EXIT_CODE, CrashPoints

pytestmark = pytest.mark.unit

PROGRAM = """
import sys
from pathlib import Path
from berth_common.crash import CrashPoints
points = CrashPoints(Path(sys.argv[1]) if sys.argv[1] else None)
for point in ("Preparing", "BulkSync", "Cutover"):
    points.reached(point)
    print(point, flush=True)
"""


def run(crash_file: Path | None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", PROGRAM, str(crash_file) if crash_file else ""]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_the_named_point_kills_the_process_once(tmp_path: Path) -> None:
    crash_file = tmp_path / "crash-at"
    crash_file.write_text("BulkSync\n")
    first = run(crash_file)
    assert first.returncode == EXIT_CODE and first.stdout.split() == ["Preparing"]
    assert not crash_file.exists()  # the restarted process runs on
    again = run(crash_file)
    assert again.returncode == 0 and again.stdout.split() == ["Preparing", "BulkSync", "Cutover"]


def test_another_point_or_no_file_changes_nothing(tmp_path: Path) -> None:
    crash_file = tmp_path / "crash-at"
    crash_file.write_text("Verifying")
    assert run(crash_file).returncode == 0 and crash_file.read_text() == "Verifying"
    assert run(None).returncode == 0
    CrashPoints(None).reached("Verifying")  # unset: nothing happens in this process either
