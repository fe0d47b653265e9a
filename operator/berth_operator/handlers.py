"""kopf registrations. Thin: each handler hands its object to a reconciler.

One daemon per RepositoryPlacement runs its reconcile loop (level-triggered, like a
controller-runtime reconciler); watch events only wake it early. One timer per Machine
records the agent's heartbeat.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

import kopf
from kubernetes import config as kube_config
from kubernetes.client import ApiException

from berth_api.v1alpha1 import GROUP, VERSION
from berth_operator.agents import MachineAgents
from berth_operator.config import OperatorConfig
from berth_operator.kube import MACHINES, PLACEMENTS, Kube
from berth_operator.machine.heartbeat import beat
from berth_operator.placement.reconciler import PlacementReconciler

log = logging.getLogger("berth.operator")
CONFIG = OperatorConfig.from_env()
_wake: dict[tuple[str, str], threading.Event] = {}
_runtime: dict[str, Any] = {}


def _kube() -> Kube:
    if "kube" not in _runtime:
        try:
            kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kube_config.ConfigException:
            kube_config.load_kube_config()  # type: ignore[no-untyped-call]
        _runtime["kube"] = Kube()
        _runtime["agents"] = MachineAgents(_runtime["kube"], CONFIG)
        _runtime["reconciler"] = PlacementReconciler(_runtime["kube"], _runtime["agents"], CONFIG)
    kube: Kube = _runtime["kube"]
    return kube


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf keeps its own bookkeeping in annotations: status belongs to berth's schema,
    # where the API server would prune fields it does not know.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False  # berth posts its own events, one per phase
    settings.peering.name = CONFIG.peering
    settings.peering.mandatory = True
    # A random priority per replica: the highest works, the others stand by, so two
    # replicas never drive the same migration.
    settings.peering.priority = (
        CONFIG.peering_priority if CONFIG.peering_priority is not None else random.randint(1, 2**31)
    )
    # A crashed replica's record blocks the others until it expires: keep that short.
    settings.peering.lifetime = 10
    # Each placement's loop holds a thread for its whole life (a sync daemon), and the
    # Machine heartbeats need threads too: a pool smaller than the placements starves
    # them (bench/operator_scale.py found the cap of 64 stalling 500 placements).
    settings.execution.max_workers = CONFIG.max_workers
    _kube()


def _served(namespace: str | None, **_: Any) -> bool:
    return not CONFIG.namespaces or namespace in CONFIG.namespaces


# cancellation_backoff: on deletion kopf first signals `stopped` and looks again after
# this long (the loop below notices within 0.5 s); without it kopf cancels at once and
# only re-checks after the whole cancellation_timeout, holding the deletion for 60 s.
@kopf.daemon(
    GROUP, VERSION, PLACEMENTS, cancellation_backoff=1.0, cancellation_timeout=60, when=_served
)
def placement_loop(namespace: str | None, name: str, stopped: kopf.DaemonStopped, **_: Any) -> None:
    assert namespace is not None  # placements are namespaced
    wake = _wake.setdefault((namespace, name), threading.Event())
    kube, reconciler = _kube(), _runtime["reconciler"]
    while not stopped:
        obj = kube.placement(namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        try:
            delay = reconciler.reconcile(obj)
        except Exception:
            log.exception("reconcile failed", extra={"placement": f"{namespace}/{name}"})
            delay = CONFIG.poll_seconds
        wake.clear()
        deadline = delay
        while deadline > 0 and not stopped and not wake.is_set():
            wake.wait(min(0.5, deadline))
            deadline -= 0.5


@kopf.on.event(GROUP, VERSION, PLACEMENTS, when=_served)
def placement_changed(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    observed = (body.get("status") or {}).get("observedGeneration")
    if observed != body.metadata.get("generation"):
        _wake.setdefault((namespace or "", name), threading.Event()).set()


@kopf.on.delete(GROUP, VERSION, PLACEMENTS, when=_served)
def placement_deleted(
    spec: kopf.Spec, meta: kopf.Meta, namespace: str | None, name: str, **_: Any
) -> None:
    """Its DNS records go (a cluster without a garbage collector would keep them); Retain
    (the default) keeps the repository's data; Delete removes it everywhere."""
    _wake.pop((namespace or "", name), None)
    if spec.get("dns") and namespace:
        try:
            _kube().delete_dns_endpoint(namespace, name, str(meta.get("uid")))
        except ApiException as err:  # its owner reference still lets a collector remove it
            log.warning("dns records not removed", extra={"placement": name, "error": err.reason})
    if spec.get("deletionPolicy", "Retain") != "Delete":
        return
    agents: MachineAgents = _runtime["agents"]
    repository = spec["repository"]
    for machine in agents.refresh():
        with agents.client(machine) as agent:
            if any(r["name"] == repository for r in agent.repositories()):
                agent.down(repository)
                agent.delete(repository, confirm=repository)
                log.info("repository deleted", extra={"repository": repository, "machine": machine})


_machine_generations: dict[str, int | None] = {}


@kopf.on.event(GROUP, VERSION, MACHINES)
def machine_changed(body: kopf.Body, name: str, type: str | None, **_: Any) -> None:
    """Spec changes and additions/removals (not heartbeats) invalidate the shared list."""
    generation = None if type == "DELETED" else body.metadata.get("generation")
    if _machine_generations.get(name, -1) != generation:
        _machine_generations[name] = generation
        agents: MachineAgents | None = _runtime.get("agents")
        if agents is not None:
            agents.machines_changed()


# A failed beat (the API server refused the write) retries at the next beat, not after
# kopf's default 60 s: a Machine without a beat for 45 s counts as not Ready.
@kopf.timer(
    GROUP,
    VERSION,
    MACHINES,
    interval=CONFIG.heartbeat_seconds,
    initial_delay=0,
    backoff=CONFIG.heartbeat_seconds,
)
def machine_heartbeat(body: kopf.Body, **_: Any) -> None:
    beat(_kube(), _runtime["agents"], dict(body))
