"""A migration's beginning and end, as a placement sees them (pure).

`begin` turns decide()'s Migrate into the state the driver advances; `finish` turns an
ended state into what the placement's status and Events say, with the retry policy
applied. Stepping in between is the driver's (`driver.py`), run by `runner.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from berth_api.v1alpha1 import LastMigration, RepositoryPlacementSpec
from berth_api.v1alpha1.placement_types import RetryState, Strategy
from berth_operator.migration.retry import RetryPolicy
from berth_operator.migration.state import MigrationState, Mode, Phase
from berth_operator.placement.conditions import Verdict
from berth_operator.placement.decide import Migrate
from berth_operator.placement.reasons import Reason
from berth_operator.placement.status import last_migration, parse_seconds


@dataclass(frozen=True)
class Notice:
    """A Kubernetes Event to post about the placement."""

    reason: str
    message: str
    warning: bool = False


def migration_id(name: str, generation: int, token: str) -> str:
    """Readable and unique: the placement, the generation it serves, a random suffix."""
    return f"{name[:40].rstrip('-')}-g{generation}-{token}"


def begin(action: Migrate, spec: RepositoryPlacementSpec, migration: str) -> MigrationState:
    live = spec.checkpoint and spec.strategy == Strategy.LIVE
    return MigrationState(
        id=migration,
        repository=spec.repository,
        guid="",
        source=action.source,
        target=action.target,
        mode=Mode.LIVE if live else Mode.COLD,
        memory=spec.memory.value,
        stop_grace=spec.stop_grace_period_seconds,
    )


def started_notice(state: MigrationState) -> Notice:
    return Notice(
        "MigrationStarted",
        f"{state.id}: {state.mode} migration from {state.source} to {state.target}",
    )


def phase_notice(state: MigrationState, before: Phase) -> Notice:
    failed = state.phase in (Phase.FAILED, Phase.ROLLED_BACK)
    return Notice(
        f"Phase{state.phase.value}",
        f"{state.id}: {before.value} -> {state.phase.value}"
        + (f" ({state.reason})" if failed else ""),
        warning=failed,
    )


def migrating_verdict(state: MigrationState) -> Verdict:
    return Verdict(
        False,
        True,
        False,
        Reason.MIGRATING,
        f"{state.id}: {state.phase.value} ({state.source} -> {state.target})",
    )


@dataclass(frozen=True)
class Finished:
    record: LastMigration
    current_machine: str
    retry: RetryState | None  # None: cleared (it succeeded)
    verdict: Verdict
    notices: tuple[Notice, ...]


def finish(
    state: MigrationState,
    spec: RepositoryPlacementSpec,
    previous_retry: RetryState | None,
    generation: int,
    policy: RetryPolicy,
    now: float,
) -> Finished:
    assert state.done, state.phase
    record = LastMigration.model_validate(last_migration(state))
    if state.result == "Succeeded":
        message = (
            f"{state.id}: moved to {state.target}, downtime "
            f"{state.downtime_seconds:.3f}s, delta {state.delta_bytes} bytes"
        )
        notices = [Notice("Migrated", message)]
        if state.killed:
            notices.append(
                Notice(
                    "StopGraceExceeded",
                    f"{', '.join(state.killed)} did not stop on the stop signal and were "
                    "killed at the end of their grace period (spec.stopGracePeriodSeconds)",
                    warning=True,
                )
            )
        budget = parse_seconds(spec.downtime_budget)
        if budget is not None and (state.downtime_seconds or 0) > budget:
            notices.append(
                Notice(
                    "DowntimeBudgetExceeded",
                    f"{state.downtime_seconds:.3f}s > {spec.downtime_budget}",
                    warning=True,
                )
            )
        verdict = Verdict(False, True, False, Reason.MIGRATED, message)
        return Finished(record, state.target, None, verdict, tuple(notices))
    if state.result == "Cancelled":
        # Not a failure: nothing to retry, and the spec that asked for it is new.
        message = f"{state.id} {state.reason}; it stays on {state.source}"
        verdict = Verdict(False, True, False, Reason.CANCELLED, message)
        return Finished(
            record, state.source, None, verdict, (Notice("MigrationCancelled", message),)
        )
    retry = policy.after_failure(previous_retry, generation, state.reason, now)
    verdict = Verdict(
        False,
        True,
        False,
        Reason(state.result or Reason.FAILED),
        f"{state.id} {state.result}: {state.reason}; attempt {retry.attempts} of {policy.limit}",
    )
    return Finished(record, state.source, retry, verdict, ())
