"""A migration's phases as status.migration.phase and lastMigration.phase show them, and
the rules about them that the operator and `kubectl berth` share (pure)."""

from __future__ import annotations

import enum


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PREPARING = "Preparing"
    BULK_SYNC = "BulkSync"
    CUTOVER = "Cutover"
    VERIFYING = "Verifying"
    POST_COPY = "PostCopy"  # the target runs it; memory still arriving from the source
    FINALIZING = "Finalizing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"  # before the freeze: the source never stopped
    ROLLED_BACK = "RolledBack"  # after the freeze: the source runs again
    CANCELLED = "Cancelled"  # asked to stop before the freeze: the source never stopped


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK, Phase.CANCELLED})
# Before the commit point a cancel costs nothing but what was sent. The commit point is
# the status write that records the freeze's moment (status.migration.frozen_at_epoch),
# just before the freeze; the operator guards it with the placement's resourceVersion,
# so a cancel written first always wins. After it the application stops on the source
# and a way back would cost a rollback, a second downtime: the move runs to its end.
CANCELLABLE = frozenset({Phase.PENDING, Phase.PREPARING, Phase.BULK_SYNC})


def before_commit(phase: str, freeze_recorded: bool) -> bool:
    """Whether a migration in `phase` can still be cancelled: Cutover counts until the
    freeze's moment is recorded."""
    return phase in CANCELLABLE or (phase == Phase.CUTOVER and not freeze_recorded)
