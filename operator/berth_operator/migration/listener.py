"""What the driver tells whoever runs a migration, typed.

`persist` is the one hook a listener must implement: the driver calls it where a
restarted operator must find the migration as it is (before the target is told to run
the application), and it must not return before the state is durable. `commit` persists
the state that passes the commit point (the freeze's moment, just before the freeze) and
may refuse by raising, when a cancel may have come first; `cancelled` says whether the
migration was asked to stop. The other hooks are for reporting and may do nothing.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any

from berth_common.agent_api.models import PushProgress
from berth_operator.migration.state import MigrationState, Phase


@dataclass(frozen=True)
class TransferProgress:
    label: str  # bulk1, bulk2 ... final
    bytes_done: int
    bytes_total: int
    rate: float  # bytes per second so far

    @classmethod
    def from_agent(cls, label: str, event: PushProgress) -> TransferProgress:
        return cls(
            label=label, bytes_done=event.bytes_done, bytes_total=event.bytes_total, rate=event.rate
        )

    def wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class MigrationListener(abc.ABC):
    @abc.abstractmethod
    def persist(self, state: MigrationState) -> None:
        """Make `state` durable where a restarted operator looks for it."""

    def commit(self, state: MigrationState) -> None:
        """Persist `state`, which passes the commit point; raise if it must not pass
        (the driver freezes nothing then, and the step is tried again)."""
        self.persist(state)

    def cancelled(self, state: MigrationState) -> bool:
        """Whether the migration was asked to stop (the driver honours it only before
        the commit point)."""
        return False

    def phase_changed(self, state: MigrationState, before: Phase) -> None:
        """The migration left `before` for `state.phase` (already persisted if the new
        phase is one a restart must know)."""
        return None

    def progress(self, state: MigrationState, progress: TransferProgress) -> None:
        """A transfer between the agents moved on."""
        return None

    def answered(self, state: MigrationState) -> None:
        """The target runs the application and answered: the downtime is over."""
        return None


class Unrecorded(MigrationListener):
    """For a migration driven outside the operator (tests, benchmarks): keeps the last
    persisted state in memory and nothing else."""

    def __init__(self) -> None:
        self.persisted: MigrationState | None = None

    def persist(self, state: MigrationState) -> None:
        self.persisted = state.model_copy(deep=True)
