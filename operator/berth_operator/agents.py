"""Reaching machines' agents, as their Machine resources describe them."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import Any

from berth_common.agent_api.client import AgentClient, tls_context
from berth_common.agent_api.models import RepositoryStatus
from berth_operator.config import OperatorConfig
from berth_operator.controller.cache import ObjectCache

LOOK_TIMEOUT = 15.0  # seconds: a heartbeat or an inventory look
# Longer than the time between two heartbeats, shorter than the agent keeps its end (75 s).
LOOK_KEEP_ALIVE = 60.0


class MachineAgents:
    """Implements the migration driver's Agents: each machine's endpoint and a client,
    from its Machine as the cache holds it."""

    def __init__(self, machines: ObjectCache[str], config: OperatorConfig) -> None:
        self.machines, self.config = machines, config
        # One long-lived client per machine for the quick looks (heartbeats, inventories):
        # a TLS handshake and a certificate load per look cost more CPU than the look.
        self._lookers: dict[str, tuple[tuple[str, Path | bytes], AgentClient]] = {}
        self._contexts: dict[Path | bytes, ssl.SSLContext] = {}
        self._lock = threading.Lock()

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

    def _context(self, ca: Path | bytes) -> ssl.SSLContext:
        """One TLS context per CA, shared by every client of it: each migration step
        opens clients, and loading the certificates cost more than some of its calls.
        (Renewed certificates are read by the next operator, as for the lookers.)"""
        with self._lock:
            context = self._contexts.get(ca)
            if context is None:
                identity = self.config.identity
                context = self._contexts[ca] = tls_context(ca, identity.cert, identity.key)
            return context

    def client(self, machine: str, timeout: float = 300) -> AgentClient:
        ca, identity = self._ca(machine), self.config.identity
        return AgentClient(
            self.endpoint(machine), ca, identity.cert, identity.key, timeout=timeout,
            context=self._context(ca),
        )  # fmt: skip

    def looker(self, machine: str) -> AgentClient:
        """The machine's long-lived client for quick calls (LOOK_TIMEOUT); not to be
        closed by its caller. A new one when the Machine's endpoint or CA changes."""
        wanted = (self.endpoint(machine), self._ca(machine))
        with self._lock:
            held = self._lookers.get(machine)
            if held is not None and held[0] == wanted:
                return held[1]
            if held is not None:
                held[1].close()
            identity = self.config.identity
            client = AgentClient(
                *wanted, identity.cert, identity.key, timeout=LOOK_TIMEOUT,
                keep_alive=LOOK_KEEP_ALIVE,
            )  # fmt: skip
            self._lookers[machine] = (wanted, client)
            return client

    def forget(self, machine: str) -> None:
        """The Machine is gone: its long-lived client closes."""
        with self._lock:
            held = self._lookers.pop(machine, None)
        if held is not None:
            held[1].close()

    def repositories(self, machine: str) -> list[RepositoryStatus]:
        """Asks the machine's agent now (for the inventories), with the heartbeat's call:
        unchanged since the last beat, it costs the agent's 304 alone."""
        return self.looker(machine).heartbeat().repositories
