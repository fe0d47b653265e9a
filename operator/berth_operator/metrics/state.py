"""The placements' and Machines' state as Prometheus gauges (pure).

What the alerts and the dashboard need to say *which* placement or Machine, read from
the objects the watches keep, as kube-state-metrics reads Pods. Gauges rather than
counters: a counter's first increment is invisible to `increase()` (a new series starts
at its first value), so a placement's first failed move would never alert; a gauge
carrying the time of its last move's end alerts from the first scrape that sees it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from berth_api.v1alpha1 import LastMigration
from berth_api.v1alpha1.common import Condition
from berth_api.v1alpha1.machine_types import Machine
from berth_api.v1alpha1.migration_phases import TERMINAL
from berth_api.v1alpha1.placement_types import RepositoryPlacement
from berth_operator.placement.status import parse_seconds

PLACEMENT_LABELS = ("namespace", "placement")


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    labels: tuple[str, ...]


READY = Gauge(
    "berth_placement_ready", "1 while the placement's Ready condition is True", PLACEMENT_LABELS
)
STALLED = Gauge(
    "berth_placement_stalled",
    "1 while the placement is Stalled (a person must act); reason says why",
    (*PLACEMENT_LABELS, "reason"),
)
MIGRATING = Gauge("berth_placement_migrating", "1 while a move is in flight", PLACEMENT_LABELS)
LAST_FINISHED = Gauge(
    "berth_placement_last_migration_finished_timestamp_seconds",
    "When the placement's last move ended (Unix time), by its result and its machines",
    (*PLACEMENT_LABELS, "result", "source", "target"),
)
LAST_DOWNTIME = Gauge(
    "berth_placement_last_migration_downtime_seconds",
    "The measured downtime of the placement's last move that froze it",
    PLACEMENT_LABELS,
)
BUDGET = Gauge(
    "berth_placement_downtime_budget_seconds",
    "spec.downtimeBudget, where the placement has one",
    PLACEMENT_LABELS,
)
MACHINE_READY = Gauge(
    "berth_machine_ready", "1 while the Machine's Ready condition is True", ("machine",)
)
MACHINE_FREE = Gauge(
    "berth_machine_free_bytes",
    "Free bytes in the Machine's datastore, as its last heartbeat said",
    ("machine",),
)
GAUGES = (
    READY, STALLED, MIGRATING, LAST_FINISHED, LAST_DOWNTIME, BUDGET, MACHINE_READY, MACHINE_FREE,
)  # fmt: skip


@dataclass(frozen=True)
class Sample:
    gauge: Gauge
    labels: tuple[str, ...]  # in gauge.labels' order
    value: float


def _condition(conditions: Iterable[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


def in_flight(migration: dict[str, object] | None) -> bool:
    """A migration is in flight until its phase is a terminal one (as placements read it)."""
    return bool(migration) and (migration or {}).get("phase") not in (None, *TERMINAL)


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def placement_samples(placement: RepositoryPlacement) -> list[Sample]:
    key = (placement.metadata.namespace or "", placement.metadata.name)
    status = placement.status
    ready = _condition(status.conditions, "Ready")
    stalled = _condition(status.conditions, "Stalled")
    is_stalled = stalled is not None and stalled.status == "True"
    samples = [
        Sample(READY, key, float(ready is not None and ready.status == "True")),
        Sample(
            STALLED, (*key, stalled.reason if stalled and is_stalled else ""), float(is_stalled)
        ),
        Sample(MIGRATING, key, float(in_flight(status.migration))),
    ]
    last: LastMigration | None = status.last_migration
    finished = _epoch(last.finished_at) if last else None
    if last is not None and finished is not None:
        labels = (*key, last.result or "Unknown", last.source, last.target)
        samples.append(Sample(LAST_FINISHED, labels, finished))
        if last.downtime_seconds is not None:
            samples.append(Sample(LAST_DOWNTIME, key, last.downtime_seconds))
    budget = parse_seconds(placement.spec.downtime_budget)
    if budget is not None:
        samples.append(Sample(BUDGET, key, budget))
    return samples


def machine_samples(machine: Machine) -> list[Sample]:
    name = (machine.metadata.name,)
    ready = _condition(machine.status.conditions, "Ready")
    samples = [Sample(MACHINE_READY, name, float(ready is not None and ready.status == "True"))]
    if machine.status.free_bytes is not None:
        samples.append(Sample(MACHINE_FREE, name, float(machine.status.free_bytes)))
    return samples
