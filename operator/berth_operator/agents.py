"""Reaching machines' agents, as their Machine resources describe them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.models import RepositoryStatus
from berth_operator.config import OperatorConfig
from berth_operator.controller.cache import ObjectCache


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

    def repositories(self, machine: str) -> list[RepositoryStatus]:
        """Asks the machine's agent now (for the inventories)."""
        with self.client(machine, timeout=15) as agent:
            return agent.repositories()
