"""Status pieces built from a migration (pure)."""

from __future__ import annotations

import re
from typing import Any

from berth_api.v1alpha1 import LastMigration
from berth_operator.migration.state import MigrationState


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
