"""Where to move each placement off a drained machine (pure)."""

from __future__ import annotations

from collections import Counter


def plan_drain(
    drained: str, placements: list[tuple[str, str]], candidates: dict[str, int]
) -> dict[str, str]:
    """placements: (key, current machine); candidates: machine -> repositories it holds.
    Each placement on `drained` goes to the least loaded candidate; ties by name."""
    load = Counter(candidates)
    plan: dict[str, str] = {}
    for key, machine in sorted(placements):
        if machine != drained:
            continue
        if not load:
            raise ValueError("no Ready, uncordoned machine to drain to")
        target = min(load, key=lambda m: (load[m], m))
        plan[key] = target
        load[target] += 1
    return plan
