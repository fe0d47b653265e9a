"""gitops-check: Argo CD's gopher-lua and Flux's kstatus, built once for the session."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD = REPO_ROOT / "hack" / "gitops-check" / "build.sh"


@dataclass(frozen=True)
class GitopsCheck:
    """Runs the real libraries on an object: a file, or a dict (sent on standard input)."""

    binary: Path

    def run(
        self, *args: str | Path, obj: Mapping[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *(str(a) for a in args)]
        if obj is not None:
            argv.append("-")
        return subprocess.run(
            argv,
            input=json.dumps(obj) if obj is not None else None,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def verdict(self, *args: str | Path, obj: Mapping[str, Any] | None = None) -> dict[str, str]:
        proc = self.run(*args, obj=obj)
        if proc.returncode != 0:
            raise AssertionError(
                f"gitops-check {' '.join(map(str, args))} exited {proc.returncode}: "
                f"{proc.stderr.strip()}"
            )
        result: dict[str, str] = json.loads(proc.stdout)
        assert set(result) == {"status", "message"}, result
        return result

    def argo_health(self, script: Path, obj: Path | Mapping[str, Any]) -> dict[str, str]:
        """Argo CD's verdict: {"status": "Healthy|Progressing|Degraded|...", "message": ...}."""
        if isinstance(obj, Path):
            return self.verdict("argo-health", script, obj)
        return self.verdict("argo-health", script, obj=obj)

    def kstatus(self, obj: Path | Mapping[str, Any]) -> dict[str, str]:
        """kstatus' verdict: {"status": "Current|InProgress|Failed|Terminating|...", ...}."""
        if isinstance(obj, Path):
            return self.verdict("kstatus", obj)
        return self.verdict("kstatus", obj=obj)


@pytest.fixture(scope="session")
def gitops_check(request: pytest.FixtureRequest) -> GitopsCheck:
    """Built by hack/gitops-check/build.sh (cached; a fresh machine builds it here).

    A missing Go toolchain or module proxy fails the tests rather than skipping them:
    these checks are what says berth works with Argo CD and Flux.
    """
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(BUILD)], capture_output=True, text=True, timeout=1200, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"{BUILD} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    binary = Path(proc.stdout.strip().splitlines()[-1])
    assert binary.is_file(), proc.stdout
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None and "building" in proc.stderr:
        # Shown even without -s: a first run's build time is worth seeing.
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\n[gitops-check] built {binary} in {time.monotonic() - started:.1f}s"
            )
    return GitopsCheck(binary)
