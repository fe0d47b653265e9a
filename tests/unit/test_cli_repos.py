"""kubectl berth repos (pure): Machine.status entries joined with the placements."""

from __future__ import annotations

from typing import Any

import pytest

from kubectl_berth import repos

pytestmark = pytest.mark.unit


def machine(name: str, *held: dict[str, Any]) -> dict[str, Any]:
    status = {"lastHeartbeat": "2026-12-02T00:00:00Z", "repositories": list(held)}
    return {"metadata": {"name": name}, "status": status}


def placement(namespace: str, name: str, repository: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": {"repository": repository}}


RUNNING = {
    "name": "pulse", "mounted": True, "dockerRunning": True,
    "containers": [{"name": "pulse", "state": "running", "checkpoint": True}],
    "sizeBytes": 2**30, "usedBytes": 300 * 2**20,
}  # fmt: skip
LEFT = {
    "name": "pulse", "mounted": False, "dockerRunning": False, "containers": [],
    "sizeBytes": 2**30, "usedBytes": 290 * 2**20, "movedTo": "host-b",
}  # fmt: skip


def test_each_machine_s_repositories_with_their_placement_and_what_was_left_behind() -> None:
    entries = repos.held(
        [machine("host-b", RUNNING), machine("host-a", LEFT), machine("host-c")],
        [placement("apps", "pulse", "pulse"), placement("apps", "db", "db")],
    )
    assert [(e["machine"], e["baseRetained"], e["placements"]) for e in entries] == [
        ("host-a", True, ["apps/pulse"]),
        ("host-b", False, ["apps/pulse"]),
    ]
    rows = [repos.row(e) for e in entries]
    assert rows[0] == [
        "host-a", "pulse", "apps/pulse", "no", "down", "-", "290.0 MiB", "kept (moved to host-b)"
    ]  # fmt: skip
    assert rows[1][3:7] == ["yes", "up", "pulse running (checkpoint)", "300.0 MiB"]


def test_a_repository_no_placement_names_and_an_old_operator_s_names_still_show() -> None:
    (entry,) = repos.held([machine("host-a", "orphan")], [])  # type: ignore[arg-type]
    assert entry["name"] == "orphan" and entry["placements"] == []
    assert repos.row(entry) == ["host-a", "orphan", "-", "?", "?", "-", "-", "-"]
