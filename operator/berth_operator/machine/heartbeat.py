"""A Machine's status from its agent's answers: build it (pure), then write it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from berth_agent.client import AgentAPIError
from berth_operator.agents import MachineAgents
from berth_operator.kube import Kube
from berth_operator.placement.conditions import set_condition


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_machine_status(
    previous: dict[str, Any],
    generation: int | None,
    health: dict[str, Any] | None,
    repositories: list[str],
    error: str | None,
    now: str,
) -> dict[str, Any]:
    """Ready=True with the agent's facts when it answered; Ready=False with why if not."""
    status: dict[str, Any] = {"observedGeneration": generation}
    conditions = list(previous.get("conditions", []))
    if health is not None:
        status.update(
            agentVersion=health.get("version"),
            lastHeartbeat=now,
            freeBytes=health.get("datastore", {}).get("freeBytes"),
            repositories=sorted(repositories),
        )
        conditions = set_condition(
            conditions,
            "Ready",
            True,
            "AgentAnswered",
            f"agent {health.get('version')} answered",
            generation,
            now,
        )
    else:
        conditions = set_condition(
            conditions, "Ready", False, "AgentUnreachable", error or "no answer", generation, now
        )
    status["conditions"] = conditions
    return status


def is_ready(machine: dict[str, Any]) -> bool:
    conditions = machine.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def beat(kube: Kube, agents: MachineAgents, machine: dict[str, Any]) -> dict[str, Any]:
    name = machine["metadata"]["name"]
    health: dict[str, Any] | None = None
    repositories: list[str] = []
    error: str | None = None
    try:
        agents.refresh()
        with agents.client(name, timeout=10) as agent:
            health = agent.healthz()
            repositories = [r["name"] for r in agent.repositories()]
            claimed = health.get("machine")
            if claimed and claimed != name:
                error = (
                    f"the agent at {machine['spec']['endpoint']} says it is {claimed!r}, "
                    f"not {name!r}"
                )
                health = None
    except (httpx.HTTPError, AgentAPIError, OSError) as err:
        error = f"{type(err).__name__}: {err}"
    status = build_machine_status(
        machine.get("status", {}),
        machine["metadata"].get("generation"),
        health,
        repositories,
        error,
        _now(),
    )
    kube.patch_machine_status(name, status)
    return status
