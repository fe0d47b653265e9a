"""`kubectl berth repos` (pure): every repository on each machine, from Machine.status
as the operator's heartbeats wrote it, with the placement that names it. Nothing here
reaches a host."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from berth_common.units import human_bytes

HEADERS = ["MACHINE", "REPOSITORY", "PLACEMENT", "MOUNTED", "DOCKER", "CONTAINERS", "USED", "BASE"]


def owners(placements: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """repository -> the placements (namespace/name) that name it."""
    found: dict[str, list[str]] = {}
    for p in placements:
        key = f"{p['metadata'].get('namespace', '')}/{p['metadata']['name']}"
        found.setdefault(p["spec"]["repository"], []).append(key)
    return {repository: sorted(keys) for repository, keys in found.items()}


def held(
    machines: Iterable[dict[str, Any]], placements: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One entry per repository per machine (machines in name order), as Machine.status
    holds it, with `machine`, `placements` and `baseRetained` added."""
    by_repository = owners(placements)
    entries = []
    for machine in sorted(machines, key=lambda m: m["metadata"]["name"]):
        status = machine.get("status") or {}
        for repo in status.get("repositories") or []:
            if not isinstance(repo, dict):  # written by an operator older than the entries
                repo = {"name": str(repo)}
            entries.append(
                {
                    "machine": machine["metadata"]["name"],
                    **repo,
                    "baseRetained": bool(repo.get("movedTo")),
                    "placements": by_repository.get(repo["name"], []),
                    "reportedAt": status.get("lastHeartbeat"),
                }
            )
    return entries


def _flag(value: Any, yes: str, no: str) -> str:
    return "?" if value is None else (yes if value else no)


def containers_text(containers: list[dict[str, Any]]) -> str:
    if not containers:
        return "-"
    return ", ".join(
        f"{c['name']} {c['state']}{' (checkpoint)' if c.get('checkpoint') else ''}"
        for c in containers
    )


def row(entry: dict[str, Any]) -> list[object]:
    moved_to = entry.get("movedTo")
    return [
        entry["machine"],
        entry["name"],
        ", ".join(entry["placements"]) or "-",
        _flag(entry.get("mounted"), "yes", "no"),
        _flag(entry.get("dockerRunning"), "up", "down"),
        containers_text(entry.get("containers") or []),
        human_bytes(entry.get("usedBytes"), binary=True),
        f"kept (moved to {moved_to})" if moved_to else "-",
    ]
