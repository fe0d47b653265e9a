"""`kubectl berth status` says when no operator has looked at a placement (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from kubectl_berth.render import observation, status_text

pytestmark = pytest.mark.unit


def placement(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "shop", "generation": generation},
        "spec": {"repository": "web", "machine": "host-b"},
    }
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    "status",
    [
        None,  # a server without the schema default writes no status at all
        {"observedGeneration": -1},  # the schema default: nothing has looked at it
    ],
)
def test_an_unobserved_placement_says_nothing_serves_it(status: dict[str, Any] | None) -> None:
    text = status_text(placement(1, status))
    line = next(x for x in text.splitlines() if x.strip().startswith("observed"))
    assert "not yet observed by any operator" in line
    assert "namespace shop" in line


def test_a_change_not_yet_seen_is_named_with_both_generations() -> None:
    said = observation(placement(3, {"observedGeneration": 2}))
    assert said is not None and "generation 2 of 3" in said


def test_an_observed_placement_has_no_observed_line() -> None:
    obj = placement(2, {"observedGeneration": 2, "currentMachine": "host-b", "phase": "Placed"})
    assert observation(obj) is None
    assert "observed " not in status_text(obj)
    assert "current machine  host-b" in status_text(obj)
