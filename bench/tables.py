"""What the benchmark reports share: a figure's spread over its repeats, and a Markdown
table."""

from __future__ import annotations

# A case whose repeats spread wider than this share of their median says more about the
# machine's noise than about berth (2 shared cores): flagged, not averaged away.
SPREAD_LIMIT = 0.30


def spread(values: list[float]) -> dict[str, float] | None:
    """min, median and max of a figure's repeats, and (max - min) / median."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    relative = (ordered[-1] - ordered[0]) / median if median else 0.0
    return {
        "min": round(ordered[0], 3),
        "median": round(median, 3),
        "max": round(ordered[-1], 3),
        "relative": round(relative, 3),
    }


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
