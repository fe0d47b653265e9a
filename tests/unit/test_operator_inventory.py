"""What every placement's reconcile looks at is looked at once for all of them: each
machine's repositories, the Machines, the migrations in flight
(operator/berth_operator/agents.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from berth_agent.client import AgentClient
from berth_api.v1alpha1 import RepositoryPlacementSpec
from berth_operator.agents import MachineAgents, Shared
from berth_operator.config import OperatorConfig
from berth_operator.kube import Kube
from berth_operator.migration.state import MigrationState, Phase
from berth_operator.placement.decide import Start
from berth_operator.placement.reconciler import PlacementReconciler

pytestmark = pytest.mark.unit
NOW = "2099-01-01T00:00:00Z"  # a heartbeat that never gets stale


# --- Shared ------------------------------------------------------------------------------
class Source:
    def __init__(self) -> None:
        self.now = 100.0
        self.calls = 0
        self.error: Exception | None = None
        self.during: Any = None

    def fetch(self) -> int:
        self.calls += 1
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise self.error
        return self.calls

    def shared(self, max_age: float = 5) -> Shared[int]:
        return Shared(self.fetch, max_age, lambda: self.now)


def test_one_fetch_serves_every_caller_until_it_is_too_old() -> None:
    source = Source()
    shared = source.shared()
    assert [shared.get() for _ in range(100)] == [1] * 100
    source.now += 4.9
    assert shared.get() == 1
    source.now += 0.1
    assert shared.get() == 2


def test_zero_seconds_fetches_every_time() -> None:
    source = Source()
    shared = source.shared(max_age=0)
    assert [shared.get() for _ in range(3)] == [1, 2, 3]


def test_invalidate_makes_the_next_get_fetch() -> None:
    source = Source()
    shared = source.shared()
    shared.get()
    shared.invalidate()
    assert shared.get() == 2
    assert shared.get() == 2


def test_a_fetch_begun_before_an_invalidation_answers_but_is_not_kept() -> None:
    source = Source()
    shared = source.shared()
    source.during = shared.invalidate  # berth acts while the fetch is on its way
    assert shared.get() == 1
    source.during = None
    assert shared.get() == 2
    assert shared.get() == 2


def test_a_failure_is_shared_as_long_so_a_dead_agent_costs_one_timeout() -> None:
    source = Source()
    shared = source.shared()
    source.error = httpx.ConnectTimeout("no answer")
    for _ in range(3):
        with pytest.raises(httpx.ConnectTimeout):
            shared.get()
    assert source.calls == 1
    source.error = None
    source.now += 5
    assert shared.get() == 2


def test_callers_wait_for_the_fetch_under_way_instead_of_fetching_too() -> None:
    source = Source()
    shared = source.shared()
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)

    source.during = slow
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(shared.get()))]
    threads[0].start()
    assert started.wait(5)
    source.during = None
    for _ in range(5):
        threads.append(threading.Thread(target=lambda: results.append(shared.get())))
        threads[-1].start()
    time.sleep(0.05)  # they wait for the fetch under way (or find its answer after it)
    release.set()
    for thread in threads:
        thread.join(5)
    assert results == [1] * 6 and source.calls == 1


# --- the operator's looks ----------------------------------------------------------------
def machine(name: str) -> dict[str, Any]:
    ready = {"type": "Ready", "status": "True"}
    return {
        "metadata": {"name": name},
        "spec": {"endpoint": f"https://{name}:7443"},
        "status": {"conditions": [ready], "lastHeartbeat": NOW},
    }


def placement(name: str, machine: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "RepositoryPlacement",
        "metadata": {"name": name, "namespace": "ns", "generation": 2, "uid": "u"},
        "spec": {"repository": name, "machine": machine},
        "status": status,
    }


class FakeKube:
    """The Kube calls a reconcile makes, counted."""

    def __init__(self) -> None:
        self.lists: dict[str, int] = {"machines": 0, "placements": 0}
        self.statuses: list[dict[str, Any]] = []
        self.dns_deletions: list[str] = []

    def machines(self) -> list[dict[str, Any]]:
        self.lists["machines"] += 1
        return [machine(n) for n in "abc"]

    def placements(self) -> list[dict[str, Any]]:
        self.lists["placements"] += 1
        return []

    def patch_placement_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(dict(status))

    def event(self, obj: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        pass

    def delete_dns_endpoint(self, namespace: str, name: str, owner_uid: str) -> bool:
        self.dns_deletions.append(name)
        return False


class FakeAgent:
    """An agent on machine `name` that holds one running repository, `<name>-app`."""

    def __init__(self, owner: FakeAgents, name: str) -> None:
        self.owner, self.name = owner, name

    def __enter__(self) -> FakeAgent:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def close(self) -> None:
        pass

    def repositories(self) -> list[dict[str, Any]]:
        self.owner.asked.append(self.name)
        running = {"mounted": True, "docker": {"running": True}, "containers": []}
        return [{"name": f"{self.name}-app", "guid": "g", "moved_to": None, **running}]

    def up(self, ref: str, **_: object) -> dict[str, Any]:
        return {"durations": {}}

    def down(self, ref: str, **_: object) -> dict[str, Any]:
        return {"durations": {}}


class FakeAgents(MachineAgents):
    """MachineAgents whose agents count their listings, on a clock the test turns."""

    def __init__(self, cache_seconds: float = 5) -> None:
        config = OperatorConfig(inventory_cache_seconds=cache_seconds, tls_dir=Path("/none"))
        self.fake_kube = FakeKube()
        self.now = 100.0
        super().__init__(cast(Kube, self.fake_kube), config, clock=lambda: self.now)
        self.asked: list[str] = []

    def client(self, machine: str, timeout: float = 300) -> AgentClient:
        return cast(AgentClient, FakeAgent(self, machine))


def reconciler_with(agents: FakeAgents) -> PlacementReconciler:
    return PlacementReconciler(agents.kube, agents, agents.config)


def test_settled_placements_share_each_look_instead_of_taking_their_own() -> None:
    agents = FakeAgents()
    reconciler = reconciler_with(agents)
    for i in range(50):
        reconciler.reconcile(placement(f"p{i}", "a"))
    assert agents.asked == ["a", "b", "c"]  # once per machine, not 50 times each
    assert agents.fake_kube.lists == {"machines": 1, "placements": 1}
    assert reconciler.reconcile(placement("a-app", "a")) == 10  # Settled: poll again in 10 s
    assert agents.fake_kube.statuses[-1]["phase"] == "Placed"
    agents.now += 5
    reconciler.reconcile(placement("p0", "a"))
    assert agents.asked == ["a", "b", "c"] * 2
    assert agents.fake_kube.lists == {"machines": 2, "placements": 2}
    for _ in range(3):  # without spec.dns: old records are looked for once, not every look
        reconciler.reconcile(placement("a-app", "a"))
    assert agents.fake_kube.dns_deletions == ["a-app"]


def test_zero_seconds_looks_on_every_reconcile_as_before() -> None:
    agents = FakeAgents(cache_seconds=0)
    reconciler = reconciler_with(agents)
    for i in range(4):
        reconciler.reconcile(placement(f"p{i}", "a"))
    assert agents.asked == ["a", "b", "c"] * 4
    assert agents.fake_kube.lists == {"machines": 4, "placements": 4}


def test_beginning_a_migration_is_seen_by_the_next_placement_at_once() -> None:
    agents = FakeAgents()
    reconciler = reconciler_with(agents)
    reconciler.reconcile(placement("p0", "a"))
    assert reconciler.reconcile(placement("a-app", "b")) == 0  # runs on a, wanted on b
    assert agents.fake_kube.statuses[-1]["migration"]["phase"] == Phase.PENDING.value
    reconciler.reconcile(placement("p0", "a"))
    assert agents.fake_kube.lists["placements"] == 2  # listed again: one more in flight


def test_a_migration_step_invalidates_its_source_and_target_only() -> None:
    agents = FakeAgents()
    reconciler = reconciler_with(agents)
    reconciler.reconcile(placement("p0", "a"))
    state = MigrationState(id="m1", repository="web", guid="g", source="a", target="b")
    obj = placement("web", "b", migration=state.model_dump(mode="json"))
    assert reconciler.reconcile(obj) == 0  # Pending -> Preparing: no agent call
    assert obj["status"]["migration"]["phase"] == Phase.PREPARING.value
    reconciler.reconcile(placement("p0", "a"))
    assert agents.asked == ["a", "b", "c", "a", "b"]  # not "c" again
    assert agents.fake_kube.lists["placements"] == 1  # still as many in flight


def test_the_end_of_a_migration_is_seen_by_the_next_placement_at_once() -> None:
    agents = FakeAgents()
    reconciler = reconciler_with(agents)
    reconciler.reconcile(placement("p0", "a"))
    state = MigrationState(
        id="m1",
        repository="web",
        guid="g",
        source="a",
        target="b",
        phase=Phase.FINALIZING,
        downtime_seconds=0.9,
    )
    obj = placement("web", "b", migration=state.model_dump(mode="json"))
    reconciler.reconcile(obj)  # Finalizing -> Succeeded: the source is taken down
    assert obj["status"]["migration"] is None
    assert obj["status"]["lastMigration"]["result"] == "Succeeded"
    reconciler.reconcile(placement("p0", "a"))
    assert agents.fake_kube.lists["placements"] == 2  # one fewer in flight
    assert agents.asked == ["a", "b", "c", "a", "b"]


def test_starting_a_repository_invalidates_its_machine() -> None:
    agents = FakeAgents()
    reconciler = reconciler_with(agents)
    reconciler.reconcile(placement("p0", "a"))
    obj = placement("a-app", "a")
    spec = RepositoryPlacementSpec.model_validate(obj["spec"])
    reconciler._act(obj, spec, {}, Start("Starting", "starting", "a"))
    reconciler.reconcile(placement("p0", "a"))
    assert agents.asked == ["a", "b", "c", "a"]
