"""What `kubectl berth migrate --from M` checks before it writes (pure): the placement
still runs on M and nobody has asked to move it elsewhere, so two people cannot move a
repository from under each other. The write itself carries the resourceVersion read, so
a change in between is refused by the API server."""

from __future__ import annotations

from typing import Any

TERMINAL = {"Succeeded", "Failed", "RolledBack"}  # the operator's Phase (migration/state.py)


def moved_from_refusal(obj: dict[str, Any], machine: str) -> str | None:
    """Why the placement cannot be moved from machine now; None if it can."""
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    runs_on = status.get("currentMachine")
    if runs_on != machine:
        where = f"runs on {runs_on}" if runs_on else "has not run anywhere yet"
        return f"{name} {where}, not on {machine}"
    migration = status.get("migration") or {}
    if migration and migration.get("phase") not in TERMINAL:
        return (
            f"{name} is being moved from {migration.get('source')} to "
            f"{migration.get('target')} (phase {migration.get('phase')})"
        )
    wanted = obj["spec"]["machine"]
    if wanted != machine:
        return f"{name} has already been asked to move to {wanted}"
    return None
