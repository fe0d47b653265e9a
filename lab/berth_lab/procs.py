"""Finding and stopping the processes that belong to a lab host."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from berth_common.process import run


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def netns_pids(netns: str) -> set[int]:
    result = run(["ip", "netns", "pids", netns], check=False)
    return {int(p) for p in result.stdout.split()}


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def with_descendants(roots: set[int]) -> set[int]:
    """roots and every process below them (containers hang below their shims)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def terminate_trees(roots: set[int], grace: float = 5.0) -> None:
    """Ask dockerds to stop their containers, then kill whatever is left of the trees."""
    tree = with_descendants(roots)
    dockerds = {p for p in tree if comm(p) == "dockerd"}
    for pid in dockerds:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(alive(p) for p in dockerds) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Recollect: children may have been re-parented or spawned meanwhile.
    tree = with_descendants(roots | tree)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while any(alive(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.02)


def kill_pidfile(pidfile: Path, marker: str) -> None:
    """Kill the process group named by pidfile if its command line still has marker."""
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        pidfile.unlink(missing_ok=True)
        return
    if marker in cmdline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    pidfile.unlink(missing_ok=True)
