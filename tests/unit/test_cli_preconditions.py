"""kubectl berth migrate --from (pure): moved only from where it runs, and only when
nobody else has asked to move it."""

from __future__ import annotations

from typing import Any

import pytest

from kubectl_berth.preconditions import moved_from_refusal

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
