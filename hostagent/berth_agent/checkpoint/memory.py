"""When a container's memory moves after the freeze (post-copy) rather than inside it."""

from __future__ import annotations

from pathlib import Path

from berth_common.agent_api.models import MemoryMode

# Measured on the lab: pulse (a few MiB resident) froze no shorter with post-copy, which
# adds a page server and a fetch to start; 1 GiB took 11.8 s dumped inside the freeze.
# The dump writes ~100-200 MB/s here, so 64 MiB costs about what post-copy's set-up does.
AUTO_POSTCOPY_BYTES = 64 * 1024 * 1024


def moves_after_freeze(mode: MemoryMode, resident_bytes: int | None) -> bool:
    """Whether a container's pages should follow it after the freeze. An unknown size
    under auto keeps them inside the freeze: post-copy ties the application to both
    machines until its last page has moved, worth it only for memory that is large."""
    if mode == MemoryMode.POSTCOPY:
        return True
    if mode == MemoryMode.FREEZE or resident_bytes is None:
        return False
    return resident_bytes > AUTO_POSTCOPY_BYTES


def resident_anon_bytes(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Anonymous memory resident in pid and its descendants (what a dump writes as
    pages); None when pid is gone or /proc cannot say."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            status = (proc / str(current) / "status").read_text()
            children = (proc / str(current) / "task" / str(current) / "children").read_text()
        except OSError:
            if current == pid:
                return None
            continue  # a child that just exited
        for line in status.splitlines():
            if line.startswith("RssAnon:"):
                total += int(line.split()[1]) * 1024
        todo.extend(int(c) for c in children.split())
    return total
