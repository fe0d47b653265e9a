"""kubectl berth migrate --from and cancel (pure): moved only from where it runs, and
only when nobody else has asked to move it; cancelled only before the commit point."""

from __future__ import annotations

from typing import Any

import pytest

from kubectl_berth.cli import write_checked
from kubectl_berth.client import CLIError, PlacementChanged
from kubectl_berth.preconditions import cancel_refusal, moved_from_refusal

pytestmark = pytest.mark.unit


def placement(wanted: str, runs_on: str | None, phase: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"currentMachine": runs_on} if runs_on else {}
    if phase:
        status["migration"] = {"phase": phase, "source": "host-a", "target": "host-c"}
    return {"metadata": {"name": "pulse"}, "spec": {"machine": wanted}, "status": status}


@pytest.mark.parametrize(
    ("obj", "refusal"),
    [
        (placement("host-a", "host-a"), None),
        (placement("host-a", "host-a", phase="Succeeded"), None),
        (placement("host-b", "host-b"), "pulse runs on host-b, not on host-a"),
        (placement("host-a", None), "pulse has not run anywhere yet, not on host-a"),
        (placement("host-c", "host-a"), "pulse has already been asked to move to host-c"),
        (
            placement("host-c", "host-a", phase="Cutover"),
            "pulse is being moved from host-a to host-c (phase Cutover)",
        ),
    ],
)
def test_from_refuses_unless_it_runs_there_and_nobody_moves_it(
    obj: dict[str, Any], refusal: str | None
) -> None:
    assert moved_from_refusal(obj, "host-a") == refusal


def moving(phase: str, *, frozen: bool = False, wanted: str = "host-c") -> dict[str, Any]:
    obj = placement(wanted, "host-a", phase=phase)
    obj["status"]["migration"]["id"] = "pulse-g2-ab12"
    if frozen:
        obj["status"]["migration"]["frozen_at_epoch"] = 1_700_000_000.0
    return obj


@pytest.mark.parametrize(
    ("obj", "refusal"),
    [
        (moving("Pending"), None),
        (moving("Preparing"), None),
        (moving("BulkSync"), None),
        (moving("Cutover"), None),  # its freeze not recorded yet: still before the commit
        (moving("BulkSync", wanted="host-a"), None),  # asked already: said again, harmless
        (placement("host-a", "host-a"), "pulse is not being moved"),
        (placement("host-a", "host-a", phase="Cancelled"), "pulse is not being moved"),
    ],
)
def test_cancel_is_allowed_before_the_commit_point(
    obj: dict[str, Any], refusal: str | None
) -> None:
    assert cancel_refusal(obj) == refusal


@pytest.mark.parametrize(
    "obj",
    [moving("Cutover", frozen=True), moving("Verifying", frozen=True), moving("Finalizing")],
)
def test_cancel_is_refused_after_the_commit_point_with_the_way_back(obj: dict[str, Any]) -> None:
    refusal = cancel_refusal(obj)
    phase = obj["status"]["migration"]["phase"]
    assert refusal == (
        f"pulse's move pulse-g2-ab12 is past its commit point (phase {phase}: the application "
        "was frozen on host-a); it runs to its end. Move it back afterwards: "
        "kubectl berth migrate pulse --to host-a"
    )


class ConflictingBerthStandIn:
    """A stand-in for the CLI's Kubernetes client: each write carrying a resourceVersion
    other than the placement's latest is refused, as the API server refuses it; between
    reads the placement moves through `changes` (the operator's status writes)."""

    def __init__(self, first: dict[str, Any], changes: list[dict[str, Any]]) -> None:
        self.latest, self.changes = first, changes
        self.written: list[dict[str, Any]] = []

    def placement(self, namespace: str, name: str) -> dict[str, Any]:
        return self.latest

    def patch_placement(
        self, namespace: str, name: str, spec: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        if self.changes:  # the operator wrote its status just before this write
            self.latest = self.changes.pop(0)
        if resource_version != self.latest["metadata"]["resourceVersion"]:
            raise PlacementChanged("changed since it was read")
        self.written.append(spec)
        return self.latest


def versioned(obj: dict[str, Any], version: int) -> dict[str, Any]:
    obj["metadata"].update(namespace="default", resourceVersion=str(version))
    return obj


def test_a_cancel_outlasts_status_writes_but_not_the_freeze() -> None:
    progress = [versioned(moving("BulkSync"), v) for v in (2, 3)]
    berth = ConflictingBerthStandIn(versioned(moving("BulkSync"), 1), progress)
    write_checked(berth, berth.latest, {"machine": "host-a"}, cancel_refusal, "nothing changed")  # type: ignore[arg-type]
    assert berth.written == [{"machine": "host-a"}]

    frozen = [versioned(moving("Cutover", frozen=True), 2)]
    berth = ConflictingBerthStandIn(versioned(moving("BulkSync"), 1), frozen)
    with pytest.raises(CLIError, match=r"past its commit point .*: nothing changed"):
        write_checked(berth, berth.latest, {"machine": "host-a"}, cancel_refusal, "nothing changed")  # type: ignore[arg-type]
    assert berth.written == []
