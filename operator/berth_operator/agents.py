"""Reaching machines' agents, as their Machine resources describe them."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from berth_agent.client import AgentClient
from berth_operator.config import OperatorConfig
from berth_operator.kube import Kube


class MachineAgents:
    """Implements the migration driver's Agents: endpoint and client per machine."""

    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube, self.config = kube, config
        self._machines: dict[str, dict[str, Any]] = {}
        self._ca_dir = Path(tempfile.mkdtemp(prefix="berth-ca-"))

    def refresh(self) -> dict[str, dict[str, Any]]:
        self._machines = {m["metadata"]["name"]: m for m in self.kube.machines()}
        return self._machines

    def machine(self, name: str) -> dict[str, Any]:
        if name not in self._machines:
            self.refresh()
        if name not in self._machines:
            raise KeyError(f"no Machine named {name!r}")
        return self._machines[name]

    def endpoint(self, machine: str) -> str:
        endpoint: str = self.machine(machine)["spec"]["endpoint"]
        return endpoint

    def _ca(self, machine: str) -> Path:
        bundle = self.machine(machine)["spec"].get("caBundle")
        if not bundle:
            return self.config.ca
        path = self._ca_dir / (hashlib.sha256(bundle.encode()).hexdigest()[:16] + ".crt")
        if not path.exists():
            path.write_text(bundle)
        return path

    def client(self, machine: str, timeout: float = 300) -> AgentClient:
        identity = self.config.identity
        return AgentClient(
            self.endpoint(machine), self._ca(machine), identity.cert, identity.key, timeout=timeout
        )
