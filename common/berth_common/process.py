"""Running commands with errors that say which command failed and why."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence


class CommandError(RuntimeError):
    """A command exited non-zero; carries its argv, exit code and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(self.argv)} exited {returncode}: {self.stderr}")


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: bytes | None = None,
    timeout: float | None = 120,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv without a shell; raise CommandError on a non-zero exit when check is set."""
    proc = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc


def output(argv: Sequence[str], *, timeout: float | None = 120) -> str:
    """Run argv and return its stdout as text."""
    return run(argv, timeout=timeout).stdout.decode()


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
