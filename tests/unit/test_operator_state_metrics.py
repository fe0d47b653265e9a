"""The placements' and Machines' state as gauges (metrics/state.py, pure)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from berth_api.v1alpha1.machine_types import Machine
from berth_api.v1alpha1.placement_types import RepositoryPlacement
from berth_operator.controller.cache import ObjectCache
from berth_operator.metrics.collector import StateCollector
from berth_operator.metrics.state import (
    BUDGET,
    LAST_DOWNTIME,
    LAST_FINISHED,
    MACHINE_FREE,
    MACHINE_READY,
    MIGRATING,
    READY,
    STALLED,
    machine_samples,
    placement_samples,
)

pytestmark = pytest.mark.unit


def placement_obj(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "RepositoryPlacement",
        "metadata": {"name": "db", "namespace": "shop", "resourceVersion": "7"},
        "spec": {"repository": "db", "machine": "host-b", "downtimeBudget": "500ms"},
        "status": status,
    }


def cond(kind: str, status: str, reason: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason}


ROLLED_BACK = {
    "id": "db-g2-ab12", "from": "host-a", "to": "host-b", "mode": "precopy",
    "finishedAt": "2026-12-02T10:00:00Z", "downtimeSeconds": 2.5, "result": "RolledBack",
}  # fmt: skip


def by_gauge(samples: list[Any]) -> dict[Any, tuple[tuple[str, ...], float]]:
    return {s.gauge: (s.labels, s.value) for s in samples}


def test_a_stalled_placement_after_a_rolled_back_move() -> None:
    stalled = [cond("Ready", "False", "UnknownMachine"), cond("Stalled", "True", "UnknownMachine")]
    obj = placement_obj(conditions=stalled, lastMigration=ROLLED_BACK)
    got = by_gauge(placement_samples(RepositoryPlacement.model_validate(obj)))
    key = ("shop", "db")
    assert got[READY] == (key, 0.0)
    assert got[STALLED] == ((*key, "UnknownMachine"), 1.0)
    assert got[MIGRATING] == (key, 0.0)
    assert got[LAST_FINISHED] == ((*key, "RolledBack", "host-a", "host-b"), 1_796_205_600.0)
    assert got[LAST_DOWNTIME] == (key, 2.5)
    assert got[BUDGET] == (key, 0.5)


def test_a_ready_placement_never_moved_has_no_last_move_series() -> None:
    obj = placement_obj(conditions=[cond("Ready", "True", "Placed")])
    obj["spec"].pop("downtimeBudget")
    got = by_gauge(placement_samples(RepositoryPlacement.model_validate(obj)))
    assert got[READY][1] == 1.0
    assert got[STALLED] == (("shop", "db", ""), 0.0)  # a series at 0, not none: "not stalled"
    assert not {LAST_FINISHED, LAST_DOWNTIME, BUDGET} & got.keys()


def test_a_machine_is_ready_only_with_a_true_ready_condition() -> None:
    def machine(conditions: list[dict[str, str]], free: int | None) -> Machine:
        status: dict[str, Any] = {"conditions": conditions}
        if free is not None:
            status["freeBytes"] = free
        return Machine.model_validate(
            {
                "metadata": {"name": "host-a"},
                "spec": {"endpoint": "https://h:7443"},
                "status": status,
            }
        )

    assert by_gauge(machine_samples(machine([cond("Ready", "True")], 2**30))) == {
        MACHINE_READY: (("host-a",), 1.0),
        MACHINE_FREE: (("host-a",), float(2**30)),
    }
    assert by_gauge(machine_samples(machine([cond("Ready", "False")], None))) == {
        MACHINE_READY: (("host-a",), 0.0)
    }
    assert by_gauge(machine_samples(machine([], None)))[MACHINE_READY][1] == 0.0


def test_the_collector_serves_the_caches_and_skips_what_it_cannot_read() -> None:
    placements: ObjectCache[tuple[str, str]] = ObjectCache(
        lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]), {}
    )
    machines: ObjectCache[str] = ObjectCache(lambda o: o["metadata"]["name"], {})
    placements.store(placement_obj(conditions=[cond("Ready", "True")], lastMigration=ROLLED_BACK))
    broken = placement_obj()
    broken["metadata"]["name"] = "broken"
    broken["spec"] = {"machine": 3}  # no repository: not a placement this code can read
    placements.store(broken)
    registry = CollectorRegistry()
    registry.register(StateCollector(placements, machines))
    text = generate_latest(registry).decode()
    assert 'berth_placement_ready{namespace="shop",placement="db"} 1.0' in text
    assert (
        'berth_placement_last_migration_finished_timestamp_seconds{namespace="shop",'
        'placement="db",result="RolledBack",source="host-a",target="host-b"} 1.7962056e+09'
    ) in text
    assert "broken" not in text


@pytest.mark.parametrize(("migration", "moving"), [
    (None, 0.0), ({"phase": "BulkSync"}, 1.0), ({"phase": "Cutover"}, 1.0),
    ({"phase": "Succeeded"}, 0.0), ({"phase": "RolledBack"}, 0.0),
])  # fmt: skip
def test_a_move_is_in_flight_until_its_phase_is_terminal(
    migration: dict[str, str] | None, moving: float
) -> None:
    obj = placement_obj(migration=migration) if migration else placement_obj()
    got = by_gauge(placement_samples(RepositoryPlacement.model_validate(obj)))
    assert got[MIGRATING] == (("shop", "db"), moving)
