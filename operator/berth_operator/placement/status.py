"""A placement's status, built (pure): from a migration, from a verdict, and the patch
that writes only what changed."""

from __future__ import annotations

import re
from typing import Any

from berth_api.v1alpha1 import LastMigration
from berth_api.v1alpha1.common import Condition
from berth_api.v1alpha1.placement_types import RepositoryPlacementStatus
from berth_operator.migration.state import MigrationState
from berth_operator.placement.conditions import Verdict, build_conditions


def last_migration(state: MigrationState) -> dict[str, Any]:
    record = LastMigration.model_validate(
        {
            "id": state.id,
            "from": state.source,
            "to": state.target,
            "mode": state.mode.value,
            "phase": state.phase.value,
            "started_at": state.started_at,
            "cutover_at": state.cutover_at,
            "finished_at": state.finished_at,
            "bulk_bytes": state.bulk_bytes,
            "delta_bytes": state.delta_bytes,
            "checkpoint_seconds": round(state.checkpoint_seconds, 3),
            "downtime_seconds": state.downtime_seconds,
            "phase_seconds": {k: round(v, 3) for k, v in state.phase_seconds.items()},
            "step_seconds": state.step_seconds,
            "stopped_containers": state.stopped,
            "killed_containers": state.killed,
            "post_copy_containers": state.postcopy,
            "post_copy_seconds": state.postcopy_seconds,
            "post_copy_bytes": state.postcopy_bytes,
            "post_copy_pages": state.postcopy_pages,
            "post_copy_faulted_pages": state.postcopy_faulted_pages,
            "result": state.result,
            "reason": state.reason,
        }
    )
    return record.wire()


def parse_seconds(text: str | None) -> float | None:
    """'2s', '500ms', '1.5m' -> seconds."""
    if not text:
        return None
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m)", text)
    if not match:
        return None
    value = float(match.group(1))
    return {"ms": value / 1000, "s": value, "m": value * 60}[match.group(2)]


def build_status(
    previous: RepositoryPlacementStatus,
    generation: int,
    verdict: Verdict,
    now: str,
    *,
    phase: str,
    **changes: Any,
) -> RepositoryPlacementStatus:
    """The status a reconcile ends with: `previous` with `changes` (fields of
    RepositoryPlacementStatus), the conditions from `verdict` for `generation`, and the
    phase (reasons.py: a PlacementPhase or a migration's phase). Conditions keep their
    transition times while their status holds, so an unchanged verdict builds an
    unchanged status."""
    conditions = build_conditions([c.wire() for c in previous.conditions], verdict, generation, now)
    return previous.model_copy(
        update={
            **changes,
            "observed_generation": generation,
            "conditions": [Condition.model_validate(c) for c in conditions],
            "phase": phase,
        }
    )


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: changed and added
    keys, removed ones as null, dicts recursively; empty when they are equal."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or before != value:
            patch[key] = value
    return patch
