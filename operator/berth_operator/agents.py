"""Reaching machines' agents, as their Machine resources describe them; `Shared`, one
look at something that many callers need, taken once for all of them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from berth_agent.client import AgentClient
from berth_operator.config import OperatorConfig
from berth_operator.controller.cache import ObjectCache

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
    """Implements the migration driver's Agents: each machine's endpoint and a client,
    from its Machine as the cache holds it."""

    def __init__(self, machines: ObjectCache[str], config: OperatorConfig) -> None:
        self.machines, self.config = machines, config

    def machine(self, name: str) -> dict[str, Any]:
        found = self.machines.get(name)
        if found is None:
            raise KeyError(f"no Machine named {name!r}")
        return found

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

    def repositories(self, machine: str) -> list[dict[str, Any]]:
        """Asks the machine's agent now (for the inventories)."""
        with self.client(machine, timeout=15) as agent:
            return agent.repositories()
