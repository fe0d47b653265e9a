"""The migration's state: what the operator persists in status between phases (pure)."""

from __future__ import annotations

import datetime as dt
import enum

from pydantic import BaseModel, Field

# Re-exported: the operator's modules know the phases from here.
from berth_api.v1alpha1.migration_phases import TERMINAL as TERMINAL
from berth_api.v1alpha1.migration_phases import Phase as Phase
from berth_api.v1alpha1.migration_phases import before_commit

# Phases after which the application is stopped on the source: a failure from here on
# must resume it there (docs/design.md#failure-rules). In PostCopy the source still holds
# the memory the target lacks: until the last page has moved, it takes the app back.
FROZEN = {Phase.CUTOVER, Phase.VERIFYING, Phase.POST_COPY}


class Mode(enum.StrEnum):
    LIVE = "live"  # CRIU checkpoint: processes keep their memory
    COLD = "cold"  # stop and start fresh


def timestamp(epoch: float) -> str:
    """RFC 3339 in UTC with milliseconds, as status writes every moment."""
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> str:
    return timestamp(dt.datetime.now(dt.UTC).timestamp())


def steps_together(steps: dict[str, float]) -> float:
    """How long steps took together: the same step of several containers
    ("up.restore:pulse", "up.restore:ledger") runs for all of them at once, so it counts
    for its slowest; different steps follow each other."""
    slowest: dict[str, float] = {}
    for key, seconds in steps.items():
        kind = key.split(":", 1)[0]
        slowest[kind] = max(slowest.get(kind, 0.0), seconds)
    return sum(slowest.values())


class MigrationState(BaseModel):
    id: str
    repository: str  # name
    guid: str
    source: str
    target: str
    mode: Mode = Mode.LIVE
    memory: str = "freeze"  # when checkpointed memory moves: freeze | postcopy | auto
    stop_grace: int | None = None  # seconds a stopped container gets before SIGKILL
    phase: Phase = Phase.PENDING
    started_at: str = Field(default_factory=now)
    cutover_at: str | None = None  # the freeze request: the downtime starts here
    finished_at: str | None = None
    bulk_rounds: list[int] = Field(default_factory=list)  # bytes sent per round
    delta_bytes: int = 0
    checkpoint_seconds: float = 0
    downtime_seconds: float | None = None
    phase_seconds: dict[str, float] = Field(default_factory=dict)
    # The downtime's steps as the agents measured them: freeze.*, final.*, up.*.
    step_seconds: dict[str, float] = Field(default_factory=dict)
    frozen_at_epoch: float | None = None  # wall clock at freeze (seconds since the epoch)
    postcopy: list[str] = Field(default_factory=list)  # containers whose pages follow
    stopped: list[str] = Field(default_factory=list)  # stopped at the freeze
    killed: list[str] = Field(default_factory=list)  # of them: killed after their grace
    answered_at_epoch: float | None = None  # wall clock when the target answered
    postcopy_seconds: float | None = None  # from the answer until the last page arrived
    postcopy_bytes: int = 0  # received by the target's page fetches (TCP, TLS included)
    postcopy_progress_at: float | None = None  # wall clock when those bytes last grew
    postcopy_pages: int = 0  # pages the target's fetches placed
    postcopy_faulted_pages: int = 0  # of them: faulted on before they had arrived
    result: str | None = None  # Succeeded | Failed | RolledBack | Cancelled
    reason: str | None = None

    @property
    def bulk_bytes(self) -> int:
        return sum(self.bulk_rounds)

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL

    @property
    def cancellable(self) -> bool:
        """Before the commit point (migration_phases.py)."""
        return before_commit(self.phase, self.frozen_at_epoch is not None)

    def transfer_id(self, label: str) -> str:
        return f"{self.id}-{label}"
