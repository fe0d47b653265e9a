"""The session signer's own cache, queue and workers, beside the placements' (a
person waiting for `kubectl berth logs` never queues behind 5,000 placements)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kubernetes import client

from berth_operator.controller.cache import ObjectCache
from berth_operator.controller.queue import WorkQueue
from berth_operator.controller.workers import Workers
from berth_operator.machine.inventory import Inventories
from berth_operator.placement.status_writer import PlacementKey
from berth_operator.sessions.api import SessionsAPI
from berth_operator.sessions.signer import SessionsCA, SessionSigner, csr_name, is_session_request

log = logging.getLogger("berth.operator.sessions")
WORKERS = 2
RETRY_MAX_SECONDS = 5.0  # a person is waiting: a failed answer is tried again soon


class SessionSigning:
    def __init__(
        self,
        api_client: client.ApiClient,
        ca_dir: Path | None,
        placements: ObjectCache[PlacementKey],
        inventories: Inventories,
    ) -> None:
        ca = SessionsCA.load(ca_dir) if ca_dir is not None else None
        self.csrs: ObjectCache[str] = ObjectCache(csr_name, {})
        self.queue: WorkQueue[str] = WorkQueue(backoff_max=RETRY_MAX_SECONDS)
        self.signer = SessionSigner(SessionsAPI(api_client), self.csrs, placements, inventories, ca)
        self.workers = Workers("sessions", self.queue, self.signer.reconcile, WORKERS)
        if ca is None:
            log.info("sessions disabled: no sessions CA; session requests are denied")

    def start(self) -> None:
        self.workers.start()

    def stop(self) -> None:
        self.workers.stop()

    def event(self, kind: str | None, obj: dict[str, Any]) -> None:
        if not is_session_request(obj):
            return
        if kind == "DELETED":
            self.csrs.delete(csr_name(obj))
            return
        self.csrs.store(obj)
        self.queue.add(csr_name(obj))
