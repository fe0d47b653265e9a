"""kstatus conditions, computed in one place (pure).

Ready, Reconciling and Stalled follow kstatus: while work is under way Reconciling=True;
a problem that needs a person is Stalled=True with a reason; Ready=True only when the
repository runs on the desired machine and status reflects the current generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from berth_operator.placement.reasons import Reason

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"


@dataclass(frozen=True)
class Verdict:
    """What the reconciler concluded this round, in the terms of the conditions."""

    ready: bool
    reconciling: bool
    stalled: bool
    reason: Reason
    message: str


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """conditions with type_ set; lastTransitionTime changes only when the status does."""
    value = "True" if status else "False"
    previous = next((c for c in conditions if c.get("type") == type_), None)
    since = (
        previous["lastTransitionTime"]
        if previous and previous.get("status") == value and previous.get("lastTransitionTime")
        else now
    )
    updated = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    return [c for c in conditions if c.get("type") != type_] + [updated]


def build_conditions(
    current: list[dict[str, Any]], verdict: Verdict, generation: int | None, now: str
) -> list[dict[str, Any]]:
    conditions = list(current)
    ready_reason = verdict.reason if not verdict.ready else "Placed"
    conditions = set_condition(
        conditions, READY, verdict.ready, ready_reason, verdict.message, generation, now
    )
    conditions = set_condition(
        conditions,
        RECONCILING,
        verdict.reconciling,
        verdict.reason if verdict.reconciling else "Idle",
        verdict.message if verdict.reconciling else "",
        generation,
        now,
    )
    conditions = set_condition(
        conditions,
        STALLED,
        verdict.stalled,
        verdict.reason if verdict.stalled else "NotStalled",
        verdict.message if verdict.stalled else "",
        generation,
        now,
    )
    order = {READY: 0, RECONCILING: 1, STALLED: 2}
    return sorted(conditions, key=lambda c: order.get(c["type"], 3))


def already_said(
    conditions: list[dict[str, Any]], verdict: Verdict, generation: int | None
) -> bool:
    """Whether `conditions` already say this verdict's problem (a stall, or a wait with
    its reason and message) for this generation: a problem is announced once (an Event),
    not on every look while it lasts."""
    type_ = STALLED if verdict.stalled else RECONCILING
    said = next((c for c in conditions if c.get("type") == type_), None)
    return bool(
        said
        and said.get("status") == "True"
        and (said.get("reason"), said.get("message")) == (verdict.reason, verdict.message)
        and said.get("observedGeneration") == generation
    )
