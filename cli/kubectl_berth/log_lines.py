"""Following a repository's logs across a move (pure): which lines were printed already.

Docker prefixes every line with its RFC 3339 time (nanoseconds), and the container's
log moves with the repository's image, so the new machine's `docker logs` repeats what
the old one showed; a line is new if it is later than the last one printed from its
container.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

_LINE = re.compile(
    r"^(?:\[(?P<container>[^\]]+)\] )?"  # "[name] " when several containers are shown
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?Z "
)


@dataclass(frozen=True, order=True)
class LogTime:
    seconds: int  # since the epoch
    nanos: int

    @property
    def epoch(self) -> float:
        return self.seconds + self.nanos / 1e9


def stamp(line: str) -> tuple[str, LogTime] | None:
    """The line's container (as prefixed; "" for one container) and time, if it has one."""
    match = _LINE.match(line)
    if match is None:
        return None
    whole = dt.datetime.fromisoformat(match["time"]).replace(tzinfo=dt.UTC)
    nanos = int((match["frac"] or "0").ljust(9, "0"))
    return match["container"] or "", LogTime(int(whole.timestamp()), nanos)


@dataclass
class Printed:
    """The last time printed from each container."""

    last: dict[str, LogTime] = field(default_factory=dict)

    def is_new(self, line: str) -> bool:
        """Whether line should be printed; records it if so."""
        stamped = stamp(line)
        if stamped is None:
            return True
        container, at = stamped
        before = self.last.get(container)
        if before is not None and at <= before:
            return False
        self.last[container] = at
        return True

    def since(self) -> float | None:
        """Where to ask the next machine to start (the earliest container's last line)."""
        return min(t.epoch for t in self.last.values()) if self.last else None
