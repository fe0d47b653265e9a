"""Test-only crash points: a process dies at a named point, as if it were killed there.

The fault tests kill the operator or an agent at an exact step (a phase lasting a few
milliseconds, the instant after a restore) instead of racing a poll against it. A point
fires when the crash file exists and names it; the file is removed first, so the process
restarted after the crash runs on. Without a crash file configured this does nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("berth.crash")
EXIT_CODE = 137  # what a SIGKILL looks like to whoever waits for the process


class CrashPoints:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    @classmethod
    def from_env(cls, variable: str = "BERTH_CRASH_FILE") -> CrashPoints:
        value = os.environ.get(variable)
        return cls(Path(value) if value else None)

    def reached(self, point: str) -> None:
        if self.path is None:
            return
        try:
            wanted = self.path.read_text().strip()
        except (OSError, ValueError):  # absent (the usual case) or unreadable: no crash
            return
        if wanted != point:
            return
        self.path.unlink(missing_ok=True)
        log.warning("crash point reached: exiting as if killed", extra={"point": point})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_CODE)
