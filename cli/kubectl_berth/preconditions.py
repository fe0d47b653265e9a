"""What `kubectl berth migrate --from M` and `kubectl berth cancel` check before they
write (pure). migrate --from: the placement still runs on M and nobody has asked to move
it elsewhere, so two people cannot move a repository from under each other. cancel: a
move is in flight and has not passed its commit point. The CLI checks them again on
each conflicting write (cli.write_checked)."""

from __future__ import annotations

from typing import Any

from berth_api.v1alpha1.migration_phases import TERMINAL, before_commit


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


def cancel_refusal(obj: dict[str, Any]) -> str | None:
    """Why the placement's move cannot be cancelled now; None if it can."""
    name = obj["metadata"]["name"]
    migration = (obj.get("status") or {}).get("migration") or {}
    phase = migration.get("phase")
    if not migration or not isinstance(phase, str) or phase in TERMINAL:
        return f"{name} is not being moved"
    if not before_commit(phase, migration.get("frozen_at_epoch") is not None):
        source = migration.get("source")
        return (
            f"{name}'s move {migration.get('id')} is past its commit point (phase {phase}: "
            f"the application was frozen on {source}); it runs to its end. Move it back "
            f"afterwards: kubectl berth migrate {name} --to {source}"
        )
    return None
