"""kopf registrations. Thin: watch events go into the operator's caches and queue
(`runtime.Operator`); kopf brings the watches, peering between replicas and the
deletion finalizer of placements whose deletion has work. The operator lives in kopf's
memo, built at start-up from the configuration `cli.py` put there."""

from __future__ import annotations

import logging
import random
from typing import Any

import kopf
from kubernetes import client as kube_client
from kubernetes import config as kube_config

from berth_api.v1alpha1 import GROUP, VERSION
from berth_operator.config import OperatorConfig
from berth_operator.kube import MACHINES, PLACEMENTS, Kube
from berth_operator.placement.deletion import delete_placement, deletion_has_work
from berth_operator.runtime import Operator

log = logging.getLogger("berth.operator")


def _kube(connections: int) -> Kube:
    """The Kubernetes client, with a connection to the API server for each thread that
    may call it at once (the client's default of 5 per core makes the rest open and
    drop a TLS connection per call)."""
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        kube_config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = kube_client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = connections
    return Kube(kube_client.ApiClient(configuration))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = memo.config
    # kopf keeps its own bookkeeping in annotations: status belongs to berth's schema,
    # where the API server would prune fields it does not know.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False  # berth posts its own events, one per phase
    settings.peering.name = config.peering
    settings.peering.mandatory = True
    # A random priority per replica: the highest works, the others stand by, so two
    # replicas never drive the same migration.
    settings.peering.priority = (
        config.peering_priority if config.peering_priority is not None else random.randint(1, 2**31)
    )
    # A crashed replica's record blocks the others until it expires: keep that short.
    settings.peering.lifetime = 10
    settings.execution.max_workers = config.max_workers  # deletions only: the rest is async
    memo.operator = Operator(_kube(config.worker_count + 16), config)
    memo.operator.start()


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.operator.stop()


def _served(memo: kopf.Memo, namespace: str | None, **_: Any) -> bool:
    operator: Operator = memo.operator
    return operator.serves(namespace)


@kopf.on.event(GROUP, VERSION, PLACEMENTS, when=_served)
async def placement_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.operator.placement_event(type, dict(body))


@kopf.on.event(GROUP, VERSION, MACHINES)
async def machine_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.operator.machine_event(type, dict(body))


@kopf.on.event("certificates.k8s.io", "v1", "certificatesigningrequests")
async def session_request_event(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """kubectl berth logs/exec asking for a session (others' CSRs are ignored)."""
    memo.operator.session_request_event(type, dict(body))


def _deletion_has_work(memo: kopf.Memo, namespace: str | None, spec: kopf.Spec, **_: Any) -> bool:
    return _served(memo, namespace) and deletion_has_work(dict(spec))


@kopf.on.delete(GROUP, VERSION, PLACEMENTS, when=_deletion_has_work)
def placement_deleted(spec: kopf.Spec, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """Its DNS records go; Retain (the default) keeps the repository's data, Delete
    removes it everywhere."""
    operator: Operator = memo.operator
    delete_placement(operator.kube, operator.agents, dict(spec), dict(meta))
