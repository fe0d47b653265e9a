"""Running one step of a placement's migration: the driver advances it, the placement's
status records it, Events and metrics tell about it (an adapter)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from berth_api.v1alpha1 import RepositoryPlacement
from berth_api.v1alpha1.placement_types import HISTORY_LIMIT
from berth_common.crash import CrashPoints
from berth_common.units import parse_rate
from berth_operator import metrics
from berth_operator.agents import MachineAgents
from berth_operator.config import OperatorConfig
from berth_operator.credentials import RepositoryKeys
from berth_operator.migration.driver import MigrationDriver
from berth_operator.migration.lifecycle import Finished, Notice, finish, phase_notice
from berth_operator.migration.listener import MigrationListener, TransferProgress
from berth_operator.migration.retry import RetryPolicy
from berth_operator.migration.state import MigrationState, Phase

log = logging.getLogger("berth.operator.migration")
# status written with the state: what a restarted operator goes on from.
Record = Callable[[MigrationState, TransferProgress | None], None]


@dataclass(frozen=True)
class StatusHooks:
    """How a step reaches its placement (the controller's): `record` writes the state
    (with a transfer's progress); `commit` writes it only if nobody changed the placement
    since it was read, and raises if somebody did; `cancelled` says whether the
    placement now asks for the migration to stop."""

    record: Record
    commit: Callable[[MigrationState], None]
    cancelled: Callable[[MigrationState], bool]


def progress_worth_writing(phase: Phase, seconds_since_last: float) -> bool:
    """A push's progress goes into status at most once a second, and never while the
    application is frozen (the final push): a status write there is downtime."""
    return phase != Phase.CUTOVER and seconds_since_last > 1


def persisted(state: MigrationState, progress: TransferProgress | None) -> dict[str, Any]:
    """status.migration: the state, and the transfer's progress while one runs."""
    return {**state.model_dump(mode="json"), **({"progress": progress.wire()} if progress else {})}


class PlacementListener(MigrationListener):
    """Persists into the placement's status; keeps the phase changes for Events."""

    def __init__(self, hooks: StatusHooks, clock: Callable[[], float] = time.monotonic) -> None:
        self._hooks, self._record, self._clock = hooks, hooks.record, clock
        self._last_progress = float("-inf")
        self.notices: list[Notice] = []

    def persist(self, state: MigrationState) -> None:
        self._record(state, None)

    def commit(self, state: MigrationState) -> None:
        self._hooks.commit(state)

    def cancelled(self, state: MigrationState) -> bool:
        return self._hooks.cancelled(state)

    def phase_changed(self, state: MigrationState, before: Phase) -> None:
        self.notices.append(phase_notice(state, before))

    def progress(self, state: MigrationState, progress: TransferProgress) -> None:
        if progress_worth_writing(state.phase, self._clock() - self._last_progress):
            self._last_progress = self._clock()
            self._record(state, progress)


class MigrationRunner:
    """What the placement controller needs of it: `step` one phase (recording it with
    `record`), and `finished` to turn an ended migration into status."""

    def __init__(
        self,
        agents: MachineAgents,
        config: OperatorConfig,
        keys: RepositoryKeys | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agents, self.config, self.keys = agents, config, keys
        self.clock = clock  # wall, seconds since the epoch
        self.policy = RetryPolicy(config.retry_backoff)

    def _driver(
        self, placement: RepositoryPlacement, listener: MigrationListener
    ) -> MigrationDriver:
        spec, keys = placement.spec, self.keys
        namespace = placement.metadata.namespace or ""
        return MigrationDriver(
            self.agents,
            self.config.identity,
            listener,
            bandwidth=parse_rate(spec.transfer.bandwidth_limit)
            if spec.transfer.bandwidth_limit
            else None,
            compress=spec.transfer.compression,
            crash=CrashPoints(self.config.crash_file),
            repository_key=(lambda: keys.key_for(namespace, spec)) if keys else lambda: None,
        )

    def step(
        self, placement: RepositoryPlacement, state: MigrationState, hooks: StatusHooks
    ) -> tuple[MigrationState, list[Notice]]:
        """One phase (two across the freeze); the state after it and what to announce."""
        listener = PlacementListener(hooks)
        after = self._driver(placement, listener).advance(state)
        log.info(
            "migration stepped",
            extra={"migration": after.id, "repository": after.repository,
                   "from_phase": state.phase.value, "phase": after.phase.value},
        )  # fmt: skip
        return after, listener.notices

    def cancel(
        self, placement: RepositoryPlacement, state: MigrationState, hooks: StatusHooks
    ) -> tuple[MigrationState, list[Notice]]:
        """End a migration before its commit point (between steps); the state after it
        and what to announce."""
        listener = PlacementListener(hooks)
        after = self._driver(placement, listener).cancel(state)
        listener.phase_changed(after, state.phase)
        return after, listener.notices

    def finished(
        self, placement: RepositoryPlacement, state: MigrationState
    ) -> tuple[Finished, dict[str, Any]]:
        """The end of a migration: its verdict and notices, the status changes, and the
        metrics counted."""
        status = placement.status
        done = finish(
            state,
            placement.spec,
            status.retry,
            placement.metadata.generation or 0,
            self.policy,
            self.clock(),
        )
        _count(state)
        changes: dict[str, Any] = {
            "migration": None,
            "last_migration": done.record,
            "history": [done.record, *status.history][:HISTORY_LIMIT],
            "current_machine": done.current_machine,
            "retry": done.retry,
        }
        log.info(
            "migration ended",
            extra={"migration": state.id, "repository": state.repository,
                   "result": state.result, "reason": state.reason,
                   "downtime_s": state.downtime_seconds},
        )  # fmt: skip
        return done, changes


def migrating_changes(state: MigrationState, progress: TransferProgress | None) -> dict[str, Any]:
    """What a step changes in status (every other field stays as it is)."""
    return {"migration": persisted(state, progress)}


def _count(state: MigrationState) -> None:
    metrics.MIGRATIONS.labels(state.result or "Unknown", state.mode.value).inc()
    metrics.BYTES.labels("bulk").inc(state.bulk_bytes)
    metrics.BYTES.labels("delta").inc(state.delta_bytes)
    metrics.BYTES.labels("postcopy").inc(state.postcopy_bytes)
    metrics.FAULTED_PAGES.inc(state.postcopy_faulted_pages)
    if state.postcopy_seconds is not None:
        metrics.POSTCOPY.observe(state.postcopy_seconds)
    if state.result == "Succeeded" and state.downtime_seconds is not None:
        metrics.DOWNTIME.observe(state.downtime_seconds)
