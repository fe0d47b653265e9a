"""Reaching machines' agents, as their Machine resources describe them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from berth_agent.client import AgentClient
from berth_operator.config import OperatorConfig
from berth_operator.kube import Kube

T = TypeVar("T")
Clock = Callable[[], float]


class Shared(Generic[T]):
    """One look at something every placement's reconcile needs, shared by all of them.

    `get()` fetches at most once per `max_age` seconds (0: every call fetches, unshared),
    one fetch at a time: callers that find a fetch under way wait for its answer. A failed
    fetch is shared as long, so a dead agent costs one timeout, not one per placement.
    `invalidate()` is for berth's own changes: the next `get()` fetches, and a fetch begun
    before it still answers its caller but is not kept.
    """

    def __init__(self, fetch: Callable[[], T], max_age: float, clock: Clock) -> None:
        self._fetch, self._max_age, self._clock = fetch, max_age, clock
        self._fetching = threading.Lock()  # held while fetching: one fetch at a time
        self._lock = threading.Lock()  # guards the fields below
        self._generation = 0
        self._at: float | None = None
        self._value: T | None = None
        self._error: Exception | None = None

    def get(self) -> T:
        if self._max_age <= 0:
            return self._fetch()
        with self._fetching:
            with self._lock:
                if self._at is not None and self._clock() - self._at < self._max_age:
                    if self._error is not None:
                        # Afresh: re-raising one instance would grow its traceback each time.
                        raise self._error.with_traceback(None)
                    return cast(T, self._value)  # set along with _at
                generation, at = self._generation, self._clock()
            try:
                value = self._fetch()
            except Exception as err:
                self._keep(generation, at, None, err)
                raise
            self._keep(generation, at, value, None)
            return value

    def _keep(self, generation: int, at: float, value: T | None, error: Exception | None) -> None:
        with self._lock:
            if generation == self._generation:  # else invalidated meanwhile: not kept
                self._at, self._value, self._error = at, value, error

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._at = None


class MachineAgents:
    """Implements the migration driver's Agents: endpoint and client per machine.

    Also what every placement's reconcile looks at, shared for
    `inventory_cache_seconds` (`shared()`): the Machines, and each machine's repositories.
    Each placement looks for its repository on every machine, so unshared, the agents
    would be asked placements x machines times per poll.
    """

    def __init__(self, kube: Kube, config: OperatorConfig, clock: Clock = time.monotonic) -> None:
        self.kube, self.config, self.clock = kube, config, clock
        self._machines: dict[str, dict[str, Any]] = {}
        self._machine_list = self.shared(self.refresh)
        self._inventories: dict[str, Shared[list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def shared(self, fetch: Callable[[], T]) -> Shared[T]:
        return Shared(fetch, self.config.inventory_cache_seconds, self.clock)

    def refresh(self) -> dict[str, dict[str, Any]]:
        self._machines = {m["metadata"]["name"]: m for m in self.kube.machines()}
        return self._machines

    def machines(self) -> dict[str, dict[str, Any]]:
        """The Machines, as listed at most `inventory_cache_seconds` ago."""
        return self._machine_list.get()

    def machine(self, name: str) -> dict[str, Any]:
        if name not in self._machines:
            self.refresh()
        if name not in self._machines:
            raise KeyError(f"no Machine named {name!r}")
        return self._machines[name]

    def endpoint(self, machine: str) -> str:
        endpoint: str = self.machine(machine)["spec"]["endpoint"]
        return endpoint

    def _ca(self, machine: str) -> Path | bytes:
        """The Machine's caBundle (PEM, used from memory), else the operator's CA file."""
        bundle = self.machine(machine)["spec"].get("caBundle")
        return bundle.encode() if bundle else self.config.ca

    def client(self, machine: str, timeout: float = 300) -> AgentClient:
        identity = self.config.identity
        return AgentClient(
            self.endpoint(machine), self._ca(machine), identity.cert, identity.key, timeout=timeout
        )

    # --- inventories -------------------------------------------------------------------
    def _inventory(self, machine: str) -> Shared[list[dict[str, Any]]]:
        def ask() -> list[dict[str, Any]]:
            with self.client(machine, timeout=15) as agent:
                return agent.repositories()

        with self._lock:
            if machine not in self._inventories:
                self._inventories[machine] = self.shared(ask)
            return self._inventories[machine]

    def repositories(self, machine: str) -> list[dict[str, Any]]:
        """The machine's repositories as its agent lists them, at most
        `inventory_cache_seconds` old; raises what the client raises if it did not answer."""
        return self._inventory(machine).get()

    def machines_changed(self) -> None:
        """A Machine was added, removed or its spec changed (cordoned, endpoint): the next
        look lists them again, so no decision acts on a machine as it was."""
        self._machine_list.invalidate()

    def invalidate(self, *machines: str) -> None:
        """berth changed what these machines hold: the next look asks their agents."""
        for machine in machines:
            self._inventory(machine).invalidate()
