"""Starting the lab's service processes (DNS, Prometheus, git, Flux) and waiting until
they answer: each a process of the lab, outliving the command that started it, its
output in a log file, its pid in a pid file that `Lab.down()` reads."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from berth_lab.host import LabError


def spawn(
    argv: list[str], log_path: Path, pidfile: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """argv in a session of its own (so it outlives us and is killed as a group), with
    the machine's environment plus env (the lab's OWNER_ENV, and the service's own)."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env},
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc


def wait_answering(
    url: str, proc: subprocess.Popen[bytes], what: str, log_path: Path, timeout: float
) -> None:
    """Until GET url answers 200; an exit or the timeout raises, pointing at the log."""
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=1) as http:
        while True:
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise LabError(f"{what} exited {proc.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise LabError(f"{what} is not answering after {timeout:.0f}s; see {log_path}")
            time.sleep(0.1)
