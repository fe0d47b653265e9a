"""The operator, assembled: caches the watches fill, the placements' work queue and
workers, the Machines' heartbeats, and which watch event wakes which placement."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from typing import Any

from prometheus_client import REGISTRY

from berth_operator import metrics
from berth_operator.agents import MachineAgents
from berth_operator.config import OperatorConfig
from berth_operator.controller import heap
from berth_operator.controller.cache import ObjectCache
from berth_operator.controller.queue import WorkQueue
from berth_operator.controller.workers import Workers
from berth_operator.kube import Kube
from berth_operator.machine.heartbeat import Heartbeats, is_ready
from berth_operator.machine.inventory import Inventories
from berth_operator.metrics.collector import StateCollector
from berth_operator.placement.controller import PLACEMENT_INDEXES, PlacementController
from berth_operator.placement.status_writer import PlacementKey, placement_key
from berth_operator.sessions.running import SessionSigning

log = logging.getLogger("berth.operator")


def machine_name(obj: dict[str, Any]) -> str:
    name: str = obj["metadata"]["name"]
    return name


def machine_facts(obj: dict[str, Any] | None) -> tuple[object, ...]:
    """What about a Machine its placements decide on, beside its heartbeat's age: its
    spec (by generation) and whether it is Ready."""
    if obj is None:
        return (None,)
    return obj["metadata"].get("generation"), is_ready(obj)


def wants_reconcile(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """A placement event that is news: first sight, a new spec, a deletion. Status
    changes are the operator's own writes, already in the cache when they happen."""
    if old is None:
        return True
    meta, before = new["metadata"], old["metadata"]
    return bool(
        meta.get("generation") != before.get("generation")
        or (meta.get("deletionTimestamp") and not before.get("deletionTimestamp"))
    )


class Operator:
    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube, self.config = kube, config
        self.placements: ObjectCache[PlacementKey] = ObjectCache(placement_key, PLACEMENT_INDEXES)
        self.machines: ObjectCache[str] = ObjectCache(machine_name, {})
        self.agents = MachineAgents(self.machines, config)
        self.inventories = Inventories(self.agents.repositories)
        self.state_metrics = StateCollector(self.placements, self.machines)
        # A reconcile that raised (an agent that did not answer, mostly) is tried again
        # within poll_seconds: a frozen application may be waiting for that answer.
        self.queue: WorkQueue[PlacementKey] = WorkQueue(backoff_max=config.poll_seconds)
        self.controller = PlacementController(
            kube, self.placements, self.machines, self.inventories, self.agents, config
        )
        self.workers = Workers(
            "placements", self.queue, self.controller.reconcile, config.worker_count
        )
        self.heartbeats = Heartbeats(
            kube, self.machines, self.agents, self.inventories, self.repositories_changed, config
        )
        self.sessions = SessionSigning(
            kube.api_client, config.sessions_ca_dir, self.placements, self.inventories
        )
        self._stop = threading.Event()
        self._resync = threading.Thread(target=self._resync_loop, name="resync", daemon=True)
        self._watching = threading.Event()  # a watch event arrived: this replica works
        self._starter = threading.Thread(target=self._start_workers, name="start", daemon=True)
        self.heap = heap.HeapKeeper(self.queue.idle)

    def serves(self, namespace: str | None) -> bool:
        return not self.config.namespaces or namespace in self.config.namespaces

    def start(self) -> None:
        # The Machines first, so no placement is decided on before its Machine is known
        # (a watch delivers them in no particular order with the placements).
        for machine in self.kube.machines():
            self.machines.store(machine)
        self.heartbeats.start()
        self._resync.start()
        REGISTRY.register(self.state_metrics)
        metrics.start_at_zero()
        # The workers wait for the first heartbeat of every Machine, which the first
        # watch event starts (a replica that stands by gets none): a placement decided
        # before would find its machine not Ready and write a Waiting status for nothing.
        self._starter.start()

    def _start_workers(self) -> None:
        self._watching.wait()
        names = self.machines.key_list()
        if not self.heartbeats.wait_first_beats(names, timeout=2 * self.config.heartbeat_seconds):
            log.warning("workers started before every Machine's first heartbeat")
        heap.freeze()  # the caches just filled: long-lived, out of every later collection
        self.workers.start()
        self.sessions.start()
        self.heap.start()
        log.info("workers started", extra={"workers": self.workers.count, "machines": len(names)})

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(KeyError):  # never started
            REGISTRY.unregister(self.state_metrics)
        self.heartbeats.stop()
        self.heap.stop()
        self.sessions.stop()
        self.workers.stop()

    # --- watch events --------------------------------------------------------------------
    def placement_event(self, kind: str | None, obj: dict[str, Any]) -> None:
        key = placement_key(obj)
        self._watching.set()
        if kind == "DELETED":
            self.placements.delete(key)
            return
        if wants_reconcile(self.placements.store(obj), obj):
            self.queue.add(key)

    def machine_event(self, kind: str | None, obj: dict[str, Any]) -> None:
        name = machine_name(obj)
        if kind == "DELETED":
            old = self.machines.delete(name)
            self.inventories.forget(name)
            self.agents.forget(name)
            changed = old is not None
        else:
            self.heartbeats.watched(name)
            self._watching.set()
            changed = machine_facts(self.machines.store(obj)) != machine_facts(obj)
        if changed:
            for key in self.placements.by("machine", name) | self.placements.by("migrating", name):
                self.queue.add(key)

    def session_request_event(self, kind: str | None, obj: dict[str, Any]) -> None:
        self.sessions.event(kind, obj)

    def repositories_changed(self, machine: str, names: set[str]) -> None:
        """A heartbeat found these repositories changed on machine."""
        log.info("repositories changed", extra={"machine": machine, "repositories": sorted(names)})
        for name in names:
            for key in self.placements.by("repository", name):
                self.queue.add(key)

    def _resync_loop(self) -> None:
        """Every placement at least once per resync_seconds, spread over that time: what
        no event told (a repository changed on a machine whose heartbeat was missed)."""
        period = self.config.resync_seconds
        while not self._stop.wait(period):
            for key in self.placements.key_list():
                self.queue.add_after(key, random.uniform(0, period / 2))
