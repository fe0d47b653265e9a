"""Finding and stopping the processes that belong to a lab host."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from berth_common.process import run
from berth_lab.plan import OWNER_ENV


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


def pidfile_pid(pidfile: Path, marker: str) -> int | None:
    """The live process named by pidfile, if its command line still has marker (a pid
    the kernel handed to another process since is not it)."""
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline and alive(pid) else None


def kill_pidfile(pidfile: Path, marker: str, grace: float = 0) -> None:
    """Kill the process group named by pidfile if its command line still has marker;
    with a grace period, ask it to stop (SIGTERM) first."""
    pid = pidfile_pid(pidfile, marker)
    if pid is not None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if wait <= 0:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + wait
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
    pidfile.unlink(missing_ok=True)


@dataclass(frozen=True)
class LabProcess:
    """A running process that belongs to a lab, and why it counts as the lab's."""

    pid: int
    comm: str
    argv: tuple[str, ...]
    marked: bool  # carries the lab's OWNER_ENV (else: names the lab's state dir in argv)

    def __str__(self) -> str:
        return f"{self.pid} {self.comm}: {' '.join(self.argv)[:200]}"


def names_dir(text: str, directory: Path) -> bool:
    """text mentions directory or a path below it (not a sibling sharing its prefix)."""
    return re.search(re.escape(str(directory)) + r"(?:/|$)", text) is not None


def belongs_to(argv: Sequence[str], environ: Mapping[str, str], state_dir: Path) -> bool | None:
    """Whether a process with this argv and environment is the lab's: True when marked
    with OWNER_ENV, False when only its command line names the lab's state dir (etcd, the
    apiserver), None when it is not the lab's."""
    if environ.get(OWNER_ENV) == str(state_dir):
        return True
    if any(names_dir(arg, state_dir) for arg in argv):
        return False
    return None


def _split(raw: bytes) -> list[str]:
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def lab_processes(state_dir: Path) -> list[LabProcess]:
    """Every live process of the lab whose state dir this is, wherever it runs: marked
    ones (all the lab starts, and their children) and ones naming the dir in argv."""
    found = []
    exclude = {os.getpid()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            argv = _split((entry / "cmdline").read_bytes())
            environ = dict(
                item.partition("=")[::2] for item in _split((entry / "environ").read_bytes())
            )
        except OSError:
            continue  # gone meanwhile
        marked = belongs_to(argv, environ, state_dir)
        pid = int(entry.name)
        if marked is not None and alive(pid):
            found.append(LabProcess(pid, comm(pid) or "?", tuple(argv), marked))
    return sorted(found, key=lambda p: p.pid)


def ancestors(pid: int) -> set[int]:
    """pid's parent, its parent, ... up to init: never to be killed as a lab's process."""
    parents = _parents()
    found: set[int] = set()
    while pid in parents and pid not in found and pid > 1:
        pid = parents[pid]
        found.add(pid)
    return found
