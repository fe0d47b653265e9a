"""Reading pulse's heartbeat from Docker's timestamped log lines."""

from __future__ import annotations

import datetime as dt
import re

_BEAT = re.compile(r"^(\S+) memory counter=(\d+) ")


def beats(lines: list[str]) -> list[tuple[dt.datetime, int]]:
    """(docker timestamp, counter) for each heartbeat line."""
    found = []
    for line in lines:
        match = _BEAT.match(line)
        if match:
            stamp = match.group(1)[:26].rstrip("Z")  # ns -> us for fromisoformat
            found.append((dt.datetime.fromisoformat(stamp), int(match.group(2))))
    return found


def counters(lines: list[str]) -> list[int]:
    return [counter for _, counter in beats(lines)]
