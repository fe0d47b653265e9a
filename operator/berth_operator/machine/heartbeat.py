"""Each Machine's heartbeat: ask its agent, record what it holds, write status only when
what it reports changed (or its last heartbeat is getting old).

The heartbeats are the operator's only periodic work. A beat that finds a repository
changed on its machine (stopped, started, moved away) reports the names, so exactly the
placements concerned are reconciled.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from berth_api.v1alpha1.machine_types import HeldContainer, HeldRepository
from berth_common.agent_api.errors import AgentError, describe
from berth_common.agent_api.models import Health, RepositoryStatus
from berth_operator.agents import MachineAgents
from berth_operator.config import OperatorConfig
from berth_operator.controller.cache import ObjectCache
from berth_operator.kube import Kube
from berth_operator.machine.inventory import Inventories
from berth_operator.placement.conditions import set_condition

log = logging.getLogger("berth.operator.machine")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def held_repository(entry: RepositoryStatus) -> dict[str, Any]:
    """A repository as Machine.status shows it, from the agent's listing."""
    return HeldRepository(
        name=entry.name,
        mounted=entry.mounted,
        docker_running=entry.docker.running,
        containers=[
            HeldContainer(name=c.name, state=c.state, checkpoint=c.checkpoint)
            for c in sorted(entry.containers, key=lambda c: c.name)
        ],
        size_bytes=entry.size_bytes,
        used_bytes=entry.allocated_bytes,
        moved_to=entry.moved_to,
    ).wire()


def build_machine_status(
    previous: dict[str, Any],
    generation: int | None,
    health: Health | None,
    held: list[dict[str, Any]],
    error: str | None,
    now: str,
) -> dict[str, Any]:
    """Ready=True with the agent's facts when it answered; Ready=False with why if not.
    held: its repositories (held_repository's)."""
    status: dict[str, Any] = {"observedGeneration": generation}
    conditions = list(previous.get("conditions", []))
    if health is not None:
        status.update(
            agentVersion=health.version,
            lastHeartbeat=now,
            freeBytes=health.datastore.free_bytes,
            repositories=held,
        )
        conditions = set_condition(
            conditions,
            "Ready",
            True,
            "AgentAnswered",
            f"agent {health.version} answered",
            generation,
            now,
        )
    else:
        status["lastHeartbeat"] = previous.get("lastHeartbeat")
        conditions = set_condition(
            conditions, "Ready", False, "AgentUnreachable", error or "no answer", generation, now
        )
    status["conditions"] = conditions
    return status


FREE_SPACE_STEP = 64 * 2**20  # a change of free space smaller than this is not news


def worth_writing(previous: dict[str, Any], status: dict[str, Any], renew_seconds: float) -> bool:
    """Write when what the agent reports changed, or when the last written heartbeat is
    `renew_seconds` old (readers count a Machine without a recent one as not Ready). The
    write is a merge patch: what `status` leaves out stays as it was."""

    def news(s: dict[str, Any]) -> dict[str, Any]:
        free = s.get("freeBytes")
        step = None if free is None else int(free) // FREE_SPACE_STEP
        held = [  # the bytes a repository uses change as it writes: refreshed on renewal
            {k: v for k, v in r.items() if k != "usedBytes"} if isinstance(r, dict) else r
            for r in s.get("repositories") or []
        ]
        facts = {k: v for k, v in s.items() if k != "lastHeartbeat"}
        return facts | {"freeBytes": step, "repositories": held}

    if news(previous) != news({**previous, **status}):
        return True
    return heartbeat_age(previous, status.get("lastHeartbeat")) >= renew_seconds


def heartbeat_age(status: dict[str, Any], now: str | None = None) -> float:
    """Seconds since status's lastHeartbeat (at `now`, an RFC 3339 time; default: now);
    infinite without one."""
    beat = status.get("lastHeartbeat")
    if not beat:
        return float("inf")
    at = dt.datetime.fromisoformat(now.replace("Z", "+00:00")) if now else dt.datetime.now(dt.UTC)
    return (at - dt.datetime.fromisoformat(beat.replace("Z", "+00:00"))).total_seconds()


def is_ready(machine: dict[str, Any]) -> bool:
    conditions = machine.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class Heartbeats:
    """Beats every Machine in the cache each `heartbeat_seconds`, a few at a time; a
    machine whose last beat is still waiting for its agent is skipped, not queued."""

    def __init__(
        self,
        kube: Kube,
        machines: ObjectCache[str],
        agents: MachineAgents,
        inventories: Inventories,
        on_changed: Callable[[str, set[str]], None],
        config: OperatorConfig,
    ) -> None:
        self.kube, self.machines, self.agents = kube, machines, agents
        self.inventories, self.on_changed, self.config = inventories, on_changed, config
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="heartbeat")
        self._running: dict[str, Future[None]] = {}
        # Machines a watch has delivered: a replica that stands by (kopf's peering pauses
        # its watches) beats none.
        self._watched: set[str] = set()
        self._submitting = threading.Lock()
        self._beaten: set[str] = set()  # machines beaten at least once
        self._beaten_changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeats", daemon=True)
        # Each machine's last listing, and what Machine.status shows of it.
        self._held_built: dict[str, tuple[list[RepositoryStatus], list[dict[str, Any]]]] = {}

    def start(self) -> None:
        self._thread.start()

    def watched(self, name: str) -> None:
        """A watch delivered this Machine: beat it from now on, the first time at once."""
        if name in self._watched:
            return
        self._watched.add(name)
        self._submit(name)

    def wait_first_beats(self, names: list[str], timeout: float) -> bool:
        """Until each machine has had its first beat (answered or not), or timeout."""
        deadline = time.monotonic() + timeout
        with self._beaten_changed:
            while not self._beaten.issuperset(names):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._beaten_changed.wait(left)
        return True

    def _submit(self, name: str) -> None:
        with self._submitting:
            running = self._running.get(name)
            if running is None or running.done():
                self._running[name] = self._pool.submit(self._beat_logged, name)

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for name in self.machines.key_list():
                if name in self._watched:
                    self._submit(name)
            self._stop.wait(max(0.0, self.config.heartbeat_seconds - (time.monotonic() - started)))

    def _beat_logged(self, name: str) -> None:
        try:
            self.beat(name)
        except Exception:
            log.exception("heartbeat failed", extra={"machine": name})
        finally:
            with self._beaten_changed:
                self._beaten.add(name)
                self._beaten_changed.notify_all()

    def _held(self, name: str, listing: list[RepositoryStatus]) -> list[dict[str, Any]]:
        """The listing as Machine.status shows it, built again only when the agent's
        answer is a new one (a 304 brings back the same listing)."""
        cached = self._held_built.get(name)
        if cached is not None and cached[0] is listing:
            return cached[1]
        built = [held_repository(r) for r in sorted(listing, key=lambda r: r.name)]
        self._held_built[name] = (listing, built)
        return built

    def beat(self, name: str) -> dict[str, Any] | None:
        """One beat of one machine: the status written, or None if nothing was."""
        machine = self.machines.get(name)
        if machine is None:
            return None
        health: Health | None = None
        listing: list[RepositoryStatus] | None = None
        error: str | None = None
        try:
            beat = self.agents.looker(name).heartbeat()
            health, listing = beat.health, beat.repositories
            claimed = health.machine
            if claimed and claimed != name:
                error = (
                    f"the agent at {machine['spec']['endpoint']} says it is {claimed!r}, "
                    f"not {name!r}"
                )
                health, listing = None, None
        except (AgentError, OSError) as err:
            error = describe(err)
        changed = self.inventories.record(name, listing, error)
        if changed:
            self.on_changed(name, changed)
        previous = machine.get("status") or {}
        status = build_machine_status(
            previous,
            machine["metadata"].get("generation"),
            health,
            self._held(name, listing or []),
            error,
            _now(),
        )
        if not worth_writing(previous, status, self.config.heartbeat_renew_seconds):
            return None
        written = self.kube.patch_machine_status(name, status)
        if written is not None:
            self.machines.store(written)
        return status
