"""The placement controller, heartbeats and watch events on fakes (a fast layer: the
real API server and agents are in tests/e2e and tests/faults). What is asserted is the
design's promise: a settled placement costs nothing, status is written only when it
changes, limits hold, and a failing migration backs off, then stalls."""

from __future__ import annotations

import copy
import itertools
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.errors import AgentError, AgentRefused, AgentUnreachable
from berth_common.agent_api.models import Health, Heartbeat, RepositoryStatus
from berth_operator.agents import MachineAgents
from berth_operator.config import OperatorConfig
from berth_operator.controller.cache import ObjectCache
from berth_operator.dns_lookup import DNSLookup
from berth_operator.kube import Kube, ObjectChanged
from berth_operator.machine.heartbeat import Heartbeats
from berth_operator.machine.inventory import Inventories, Look, changed_names
from berth_operator.migration.state import MigrationState, Phase, timestamp
from berth_operator.placement.controller import PLACEMENT_INDEXES, PlacementController
from berth_operator.placement.dns_check import NameAnswer
from berth_operator.placement.publish import DNSConfirmation
from berth_operator.placement.status import merge_patch
from berth_operator.placement.status_writer import PlacementKey, placement_key
from berth_operator.runtime import Operator, machine_facts, wants_reconcile
from wire_fakes import container, health, repository

pytestmark = pytest.mark.unit
NOW = 4_000_000_000.0  # the fake clock's time (seconds since the epoch)


def machine(name: str, *, max_migrations: int = 1, heartbeat: float = NOW) -> dict[str, Any]:
    ready = {"type": "Ready", "status": "True"}
    return {
        "metadata": {"name": name, "generation": 1, "resourceVersion": "1"},
        "spec": {"endpoint": f"https://{name}:7443", "maxConcurrentMigrations": max_migrations},
        "status": {"conditions": [ready], "lastHeartbeat": timestamp(heartbeat)},
    }


def placement(name: str, machine: str, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "RepositoryPlacement",
        "metadata": {"name": name, "namespace": "ns", "generation": generation, "uid": name,
                     "resourceVersion": "1"},
        "spec": {"repository": name, "machine": machine},
        "status": {},
    }  # fmt: skip


class FakeKube:
    """The Kube calls the controller makes: status merge patches applied and counted."""

    def __init__(self, placements: ObjectCache[PlacementKey]) -> None:
        self.placements = placements
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.events: list[str] = []
        self.machine_writes: list[dict[str, Any]] = []
        self.dns_deletions: list[str] = []
        self.dns_written: list[dict[str, Any]] = []
        self.versions = itertools.count(100)
        # Placements the API server holds newer than the cache (a write on its way
        # through the watch): a guarded write conflicts, a read returns this.
        self.ahead: dict[PlacementKey, dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.secrets.get((namespace, name))

    def placement(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.ahead.pop((namespace, name), None) or self.placements.get((namespace, name))

    def patch_placement_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        ahead = self.ahead.get((namespace, name))
        if resource_version is not None and ahead is not None:
            raise ObjectChanged(f"{name} is at {ahead['metadata']['resourceVersion']}")
        self.patches.append((name, status))
        current = copy.deepcopy(self.placements.get((namespace, name)))
        assert current is not None
        current["status"] = apply_merge_patch(current.get("status") or {}, status)
        current["metadata"]["resourceVersion"] = str(next(self.versions))
        return current

    def patch_machine_status(self, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        self.machine_writes.append(status)
        return None

    def event(self, obj: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        self.events.append(reason)

    def apply_dns_endpoint(self, obj: dict[str, Any]) -> None:
        self.dns_written.append(obj)

    def delete_dns_endpoint(self, namespace: str, name: str, owner_uid: str) -> bool:
        self.dns_deletions.append(name)
        return True

    def machines(self) -> list[dict[str, Any]]:
        return []


def apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = apply_merge_patch(result[key], value)
        else:
            result[key] = value
    return result


class FakeAgent:
    """An agent holding running repositories; `status` of any says it is not mounted, so
    a migration from it fails in Preparing."""

    def __init__(self, fleet: FakeFleet, name: str) -> None:
        self.fleet, self.name = fleet, name

    def __enter__(self) -> FakeAgent:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def close(self) -> None:
        pass

    def healthz(self) -> Health:
        return health(self.name)

    def repositories(self) -> list[RepositoryStatus]:
        self.fleet.asked.append(self.name)
        held = sorted(self.fleet.holds.get(self.name, ()))
        return [repository(r, used_bytes=self.fleet.used_bytes) for r in held]

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(health=self.healthz(), repositories=self.repositories())

    def status(self, ref: str) -> RepositoryStatus:
        return repository(ref, mounted=False, running=False)

    def abort_transfer(self, transfer_id: str, **_: Any) -> None:
        self.fleet.aborted.append((self.name, transfer_id))

    def create(self, name: str, size: str, key: bytes | None = None, **_: Any) -> None:
        if self.fleet.create_fails is not None:
            raise self.fleet.create_fails
        self.fleet.holds.setdefault(self.name, set()).add(name)
        self.fleet.keys.append(("create", key))

    def up(self, name: str, key: bytes | None = None, **_: Any) -> None:
        self.fleet.keys.append(("up", key))


class FakeFleet(MachineAgents):
    """MachineAgents whose agents are FakeAgents; `holds` says what runs where."""

    def __init__(self, machines: ObjectCache[str], config: OperatorConfig) -> None:
        super().__init__(machines, config)
        self.holds: dict[str, set[str]] = {}
        self.asked: list[str] = []
        self.used_bytes = 2**28  # what each repository takes on its datastore
        self.create_fails: AgentError | None = None  # what each agent's create raises
        self.aborted: list[tuple[str, str]] = []  # (machine, transfer) freed
        self.keys: list[tuple[str, bytes | None]] = []  # (call, LUKS key) as sent

    def client(self, machine: str, timeout: float = 300) -> AgentClient:
        return cast(AgentClient, FakeAgent(self, machine))

    def looker(self, machine: str) -> AgentClient:
        return self.client(machine)


class Setup:
    def __init__(self, *, machines: dict[str, int], **config: Any) -> None:
        self.config = OperatorConfig(tls_dir=Path("/none"), **config)
        self.placements: ObjectCache[PlacementKey] = ObjectCache(placement_key, PLACEMENT_INDEXES)
        self.machines: ObjectCache[str] = ObjectCache(lambda o: o["metadata"]["name"], {})
        for name, most in machines.items():
            self.machines.store(machine(name, max_migrations=most))
        self.kube = FakeKube(self.placements)
        self.fleet = FakeFleet(self.machines, self.config)
        self.inventories = Inventories(self.fleet.repositories)
        self.now = NOW
        self.controller = PlacementController(
            cast(Kube, self.kube), self.placements, self.machines, self.inventories,
            self.fleet, self.config, clock=lambda: self.now,
        )  # fmt: skip

    def add(self, name: str, wanted: str, runs_on: str | None = None) -> PlacementKey:
        obj = placement(name, wanted)
        self.placements.store(obj)
        if runs_on:
            self.fleet.holds.setdefault(runs_on, set()).add(name)
        return placement_key(obj)

    def add_created(self, name: str, wanted: str, size: str, **spec: Any) -> PlacementKey:
        """A placement of a repository that exists nowhere yet: created from pulse."""
        obj = placement(name, wanted)
        obj["spec"].update(template={"size": size, "app": "pulse"}, **spec)
        self.placements.store(obj)
        return placement_key(obj)

    def status(self, key: PlacementKey) -> dict[str, Any]:
        obj = self.placements.get(key)
        assert obj is not None
        return cast(dict[str, Any], obj["status"])


def test_a_settled_placement_costs_no_write_and_no_agent_call_when_looked_at_again() -> None:
    s = Setup(machines={"a": 1, "b": 1, "c": 1})
    keys = [s.add(f"p{i}", "a", runs_on="a") for i in range(50)]
    for key in keys:
        assert s.controller.reconcile(key).requeue_after is None  # settled: no polling
    assert sorted(s.fleet.asked) == ["a", "b", "c"]  # each machine listed once, for all 50
    assert len(s.kube.patches) == 50 and s.status(keys[0])["phase"] == "Placed"
    for key in keys:
        s.controller.reconcile(key)
    assert len(s.kube.patches) == 50, "a status that did not change was written again"
    assert sorted(s.fleet.asked) == ["a", "b", "c"]


def test_a_patch_carries_only_what_changed_and_nulls_what_went() -> None:
    old = {"phase": "Placed", "retry": {"attempts": 1}, "migration": {"phase": "Cutover",
           "progress": {"label": "bulk1"}}}  # fmt: skip
    new = {"phase": "Placed", "migration": {"phase": "Verifying"}}
    assert merge_patch(old, new) == {
        "retry": None,
        "migration": {"phase": "Verifying", "progress": None},
    }
    assert merge_patch(new, new) == {}


def test_the_machine_limit_lets_one_move_begin_and_queues_the_next() -> None:
    s = Setup(machines={"a": 1, "b": 1})
    first, second = s.add("p1", "b", runs_on="a"), s.add("p2", "b", runs_on="a")
    assert s.controller.reconcile(first).requeue_after == 0
    assert s.status(first)["migration"]["phase"] == "Pending"
    assert s.controller.reconcile(second).requeue_after == s.config.poll_seconds
    waiting = s.status(second)
    assert waiting["phase"] == "Waiting" and "limit of 1" in waiting["conditions"][1]["message"]
    assert s.kube.events == ["MigrationStarted"]


def test_a_failing_migration_backs_off_then_stalls_with_migration_failed() -> None:
    s = Setup(machines={"a": 2, "b": 2}, retry_backoff=(1, 2, 4))
    key = s.add("web", "b", runs_on="a")
    waits = []
    for attempt in (1, 2, 3, 4):
        s.controller.reconcile(key)  # begins (Pending)
        while s.status(key).get("migration"):
            s.controller.reconcile(key)  # Pending -> Preparing -> Failed (source not running)
        assert s.status(key)["retry"]["attempts"] == attempt
        assert s.status(key)["lastMigration"]["result"] == "Failed"
        result = s.controller.reconcile(key)
        if attempt < 4:
            assert s.status(key)["phase"] == "Waiting"
            assert s.status(key)["conditions"][1]["reason"] == "BackingOff"
            waits.append(result.requeue_after)
            s.now += cast(float, result.requeue_after)
    assert waits == [1, 2, 4]  # the last wait happens before the last attempt
    stalled = s.status(key)["conditions"][2]
    assert (stalled["status"], stalled["reason"]) == ("True", "MigrationFailed")
    assert "4 migrations to b failed" in stalled["message"]
    assert s.controller.reconcile(key).requeue_after is None  # until someone changes it
    assert s.kube.events.count("MigrationFailed") == 1
    assert s.kube.events.count("MigrationStarted") == 4


def test_a_create_no_retry_can_satisfy_stalls_at_once_with_the_agents_reason() -> None:
    s = Setup(machines={"a": 1})
    key = s.add_created("big", "a", "10T")
    s.fleet.create_fails = AgentRefused(
        507, "InsufficientSpace", "size 10T exceeds the datastore (10.0 GiB)"
    )
    assert s.controller.reconcile(key).requeue_after is None  # no retry: a person acts
    status = s.status(key)
    stalled = status["conditions"][2]
    assert (status["phase"], stalled["status"], stalled["reason"]) == (
        "Stalled",
        "True",
        "DatastoreTooSmall",
    )
    assert stalled["message"] == (
        "a refused to create it: size 10T exceeds the datastore (10.0 GiB)"
    )
    s.controller.reconcile(key)  # a Machine changed, say: asked again, refused again
    assert s.kube.events == ["DatastoreTooSmall"], "announced once"


def test_a_create_that_may_pass_later_waits_and_is_tried_again() -> None:
    s = Setup(machines={"a": 1})
    key = s.add_created("web", "a", "1G")
    s.fleet.create_fails = AgentUnreachable("timed out")
    for _ in range(2):
        assert s.controller.reconcile(key).requeue_after == 2 * s.config.poll_seconds
        status = s.status(key)
        reconciling = status["conditions"][1]
        assert (status["phase"], reconciling["reason"]) == ("Waiting", "AgentError")
        assert status["conditions"][2]["status"] == "False"
    assert s.kube.events == ["AgentError"], "announced once while it lasts"
    s.fleet.create_fails = None
    s.controller.reconcile(key)
    assert s.status(key)["phase"] == "Creating"
    s.controller.reconcile(key)
    assert s.status(key)["phase"] == "Placed"


def moving(s: Setup, phase: str, wanted: str) -> PlacementKey:
    """A placement whose migration from a to b is in `phase`, now asking for `wanted`."""
    key = s.add("web", wanted, runs_on="a")
    obj = s.placements.get(key)
    assert obj is not None
    state = MigrationState(
        id="web-g1-ab12", repository="web", guid="g", source="a", target="b",
        phase=Phase(phase), bulk_rounds=[2**20] if phase != "BulkSync" else [],
    )  # fmt: skip
    obj["status"] = {"migration": state.model_dump(mode="json"), "currentMachine": "a"}
    obj["metadata"]["generation"] = 2
    s.placements.store(obj)
    return key


@pytest.mark.parametrize("phase", ["Pending", "Preparing", "BulkSync", "Cutover"])
def test_the_source_asked_for_again_cancels_the_move_and_it_stays_ready_there(phase: str) -> None:
    s = Setup(machines={"a": 1, "b": 1})
    key = moving(s, phase, wanted="a")
    s.controller.reconcile(key)
    status = s.status(key)
    last = status["lastMigration"]
    assert "migration" not in status and status["phase"] == "Cancelled"
    assert (last["result"], last["reason"]) == (
        "Cancelled",
        f"cancelled in {phase}: spec.machine is a again",
    )
    assert status["conditions"][1]["reason"] == "Cancelled" and "retry" not in status
    assert "MigrationCancelled" in s.kube.events
    freed = [("a", "web-g1-ab12-bulk1"), ("b", "web-g1-ab12-bulk1")]
    assert s.fleet.aborted == (freed if phase == "BulkSync" else [])
    assert s.controller.reconcile(key).requeue_after is None
    status = s.status(key)
    assert (status["phase"], status["currentMachine"]) == ("Placed", "a")
    assert status["conditions"][0]["status"] == "True"


def test_a_cancel_written_just_before_the_freeze_wins_over_it() -> None:
    """The operator records the freeze's moment with a write guarded by the placement's
    resourceVersion. A cancel that reached the API server first (not yet in the cache)
    makes that write conflict: nothing is frozen, and the next look cancels."""
    s = Setup(machines={"a": 1, "b": 1})
    key = moving(s, "Cutover", wanted="b")
    obj = s.placements.get(key)
    assert obj is not None
    cancelled = copy.deepcopy(obj)
    cancelled["spec"]["machine"] = "a"
    cancelled["metadata"].update(resourceVersion="99", generation=3)
    s.kube.ahead[key] = cancelled
    assert s.controller.reconcile(key).requeue_after == 0  # FakeAgent has no freeze: none
    status = s.status(key)
    assert status["migration"]["phase"] == "Cutover"
    assert status["migration"].get("frozen_at_epoch") is None, "the freeze was recorded"
    s.controller.reconcile(key)
    assert s.status(key)["lastMigration"]["result"] == "Cancelled"


def test_an_encrypted_repository_gets_its_key_from_the_secret_it_names() -> None:
    s = Setup(machines={"a": 1})
    key = s.add_created("vault", "a", "1G", credentialsSecretRef={"name": "vault-luks"})
    assert s.controller.reconcile(key).requeue_after == 2 * s.config.poll_seconds
    status = s.status(key)
    assert (status["phase"], status["conditions"][1]["reason"]) == (
        "Waiting",
        "CredentialsNotFound",
    )
    assert (
        "Secret ns/vault-luks (spec.credentialsSecretRef) not found"
        in (status["conditions"][1]["message"])
    )
    assert s.fleet.keys == [], "nothing asked of an agent without the key"
    s.kube.secrets[("ns", "vault-luks")] = {"other": b"x"}
    s.controller.reconcile(key)
    assert "has no 'key' entry" in s.status(key)["conditions"][1]["message"]
    s.kube.secrets[("ns", "vault-luks")] = {"key": b"s3cret"}
    s.controller.reconcile(key)
    assert s.fleet.keys == [("create", b"s3cret"), ("up", b"s3cret")]
    assert b"s3cret" not in repr(s.kube.patches).encode(), "the key reached status"
    assert s.kube.events.count("CredentialsNotFound") == 2  # one per distinct message


def test_a_heartbeat_writes_only_what_changed_and_reports_changed_repositories() -> None:
    s = Setup(machines={"a": 1}, heartbeat_renew_seconds=3600)
    changed: list[tuple[str, set[str]]] = []
    beats = Heartbeats(cast(Kube, s.kube), s.machines, s.fleet, s.inventories,
                       lambda m, names: changed.append((m, names)), s.config)  # fmt: skip
    s.fleet.holds["a"] = {"web"}
    written = beats.beat("a")
    assert written is not None
    assert written["repositories"] == [
        {"name": "web", "mounted": True, "dockerRunning": True, "containers": [],
         "sizeBytes": 2**30, "usedBytes": 2**28},
    ]  # fmt: skip
    assert changed == [("a", {"web"})]
    s.machines.store({**machine("a"), "status": written})
    assert beats.beat("a") is None, "an unchanged beat was written"
    s.fleet.used_bytes = 2**29  # the app wrote: not news until the renewal
    assert beats.beat("a") is None, "a change of used bytes alone was written"
    s.fleet.holds["a"] = {"web", "db"}
    again = beats.beat("a")
    assert again is not None and [r["name"] for r in again["repositories"]] == ["db", "web"]
    assert again["repositories"][1]["usedBytes"] == 2**29
    assert changed[-1] == ("a", {"db"})


def test_inventory_changes_name_the_repositories_that_changed() -> None:
    up = repository("web", containers=[container("app")])
    moved = up.model_copy(update={"moved_to": "b"})
    assert changed_names(Look((up,)), Look((up,))) == set()
    assert changed_names(Look((up,)), Look((moved,))) == {"web"}
    assert changed_names(None, Look((up,))) == {"web"}  # a first look: all news
    unknown = Look(None, "no answer")
    assert changed_names(Look((up,)), unknown) == {"web"}  # its placement must look
    assert changed_names(unknown, Look((up,))) == {"web"}


def test_an_inventory_read_does_not_wait_for_a_look_in_progress() -> None:
    web = repository("web", containers=[container("app")])
    asked, answer = threading.Event(), threading.Event()

    def ask(machine: str) -> list[RepositoryStatus]:
        if machine == "b":
            asked.set()
            answer.wait(10)
        return [web] if machine == "a" else []

    inventories = Inventories(ask)
    inventories.refresh("a")
    inventories.record("b", [], None)
    looking = threading.Thread(target=inventories.refresh, args=("b",))
    looking.start()
    assert asked.wait(10)
    # While b's agent is being asked again, readers get the last answers at once.
    assert inventories.get("b") == ()
    assert inventories.holders("web") == {"a": web}
    assert inventories.unknown(["a", "b"]) == set()
    answer.set()
    looking.join(10)
    inventories.record("a", None, "agent unreachable")
    assert inventories.holders("web") == {} and inventories.unknown(["a", "b"]) == {"a"}


def test_only_news_wakes_a_placement() -> None:
    s = Setup(machines={"a": 1})
    operator = Operator.__new__(Operator)  # the event routing alone, without threads
    operator.placements, operator.machines = s.placements, s.machines
    operator.inventories = s.inventories
    operator._watching = threading.Event()
    woken: list[PlacementKey] = []
    operator.queue = cast(Any, type("Q", (), {"add": lambda self, key: woken.append(key)})())
    operator.heartbeats = cast(Any, type("H", (), {"watched": lambda self, name: None})())
    obj = placement("web", "a")
    operator.placement_event(None, obj)
    assert woken == [("ns", "web")] and operator._watching.is_set()
    written = {**obj, "status": {"phase": "Placed"}}
    written["metadata"] = {**obj["metadata"], "resourceVersion": "2"}
    operator.placement_event("MODIFIED", written)  # the operator's own status write
    assert woken == [("ns", "web")]
    beat = machine("a", heartbeat=NOW + 20)
    operator.machine_event("MODIFIED", beat)  # a heartbeat: same spec, still Ready
    assert woken == [("ns", "web")]
    down = machine("a")
    down["status"]["conditions"][0]["status"] = "False"
    operator.machine_event("MODIFIED", down)
    assert woken == [("ns", "web")] * 2
    assert not wants_reconcile(obj, written) and machine_facts(beat) != machine_facts(down)


def test_a_migration_being_admitted_counts_before_its_start_is_written() -> None:
    s = Setup(machines={"a": 1, "b": 1})
    first, second = s.add("p1", "b", runs_on="a"), s.add("p2", "b", runs_on="a")
    seen: list[Any] = []
    patch = s.kube.patch_placement_status

    def slow_patch(
        namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any] | None:
        if name == "p1" and not seen:  # p1 admitted, its write under way: p2 decides now
            worker = threading.Thread(target=lambda: seen.append(s.controller.reconcile(second)))
            worker.start()
            worker.join(5)
        return patch(namespace, name, status, resource_version)

    s.kube.patch_placement_status = slow_patch  # type: ignore[method-assign]
    assert s.controller.reconcile(first).requeue_after == 0
    assert seen and seen[0].requeue_after == s.config.poll_seconds
    assert s.status(second)["phase"] == "Waiting"
    assert s.status(first)["migration"]["phase"] == "Pending"


def test_dns_records_are_removed_only_where_berth_wrote_some() -> None:
    s = Setup(machines={"a": 1})
    plain, named = s.add("plain", "a", runs_on="a"), s.add("named", "a", runs_on="a")
    s.controller.reconcile(plain)
    assert s.kube.dns_deletions == [] and s.status(plain)["dnsHostnames"] == []
    obj = s.placements.get(named)
    assert obj is not None
    s.placements.store({**obj, "status": {"dnsHostnames": ["named.example.com"]}})
    s.controller.reconcile(named)  # spec.dns is gone: its records go, once
    s.controller.reconcile(named)
    assert s.kube.dns_deletions == ["named"] and s.status(named)["dnsHostnames"] == []


def test_a_machine_first_delivered_by_a_watch_is_beaten_at_once() -> None:
    s = Setup(machines={"a": 1, "b": 1}, heartbeat_renew_seconds=3600)
    beats = Heartbeats(cast(Kube, s.kube), s.machines, s.fleet, s.inventories,
                       lambda m, names: None, s.config)  # fmt: skip
    try:
        assert not beats.wait_first_beats(["a"], timeout=0.2)  # no watch yet: no beat
        beats.watched("a")
        assert beats.wait_first_beats(["a"], timeout=5)
        assert not beats.wait_first_beats(["a", "b"], timeout=0.2)
    finally:
        beats.stop()
    assert len(s.kube.machine_writes) == 1


class FakeDNSServer:
    """A fake of DNSLookup: the answers a test sets, and how often it was asked."""

    server = "192.0.2.53:5353"

    def __init__(self) -> None:
        self.answers: dict[str, tuple[str, ...]] = {}
        self.asked = 0

    def ask(self, hostname: str, record_type: str) -> NameAnswer:
        self.asked += 1
        return NameAnswer(hostname, self.answers.get(hostname, ()))


def test_a_placement_with_dns_is_ready_only_once_the_dns_server_answers_its_machine() -> None:
    s = Setup(machines={"a": 1})
    server = FakeDNSServer()
    publisher = s.controller.publisher
    publisher.confirmation = DNSConfirmation(cast(DNSLookup, server), grace_seconds=10)
    publisher.clock = lambda: s.now
    key = s.add("web", "a", runs_on="a")
    obj = s.placements.get(key)
    assert obj is not None
    obj["spec"]["dns"] = {"hostnames": ["web.example.com"], "ttl": 5}

    def said() -> tuple[str, str, str]:
        status = s.status(key)
        ready = status["conditions"][0]
        return status["phase"], ready["status"], ready["reason"]

    assert s.controller.reconcile(key).requeue_after == 1.0  # external-dns is on its way
    assert said() == ("Waiting", "False", "DNSPending")
    assert "web.example.com -> no record" in s.status(key)["conditions"][0]["message"]
    assert len(s.kube.dns_written) == 1
    s.now += 11  # past the grace
    assert s.controller.reconcile(key).requeue_after == 10.0
    assert said() == ("Waiting", "False", "DNSNotUpdated")
    s.now += 10
    s.controller.reconcile(key)
    assert s.kube.events.count("DNSNotUpdated") == 1, "announced once while it lasts"
    assert len(s.kube.dns_written) == 1, "the records were written again"
    server.answers["web.example.com"] = ("a",)  # the machine's address (its agent's host)
    assert s.controller.reconcile(key).requeue_after is None
    assert said() == ("Placed", "True", "Placed")
    asked = server.asked
    s.controller.reconcile(key)
    assert server.asked == asked, "a confirmed placement asked the DNS server again"
