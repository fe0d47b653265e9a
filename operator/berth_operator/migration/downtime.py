"""How long the application was down in a move (pure).

The agents time it themselves: the source stamps the moment its containers begin to stop
(the freeze record travels to the target with the image) and the target stamps the
moment every TCP port first answers after the thaw, keeping that moment across replays.
Their difference is what the application lived through, even when the operator was
killed and restarted in between (measured on the operator's clock, such a move reported
10.02 s for an application gap of 1.16 s: the operator's absence, not the app's).

The two stamps come from two hosts' clocks. The operator's own measure (its freeze
request to its seeing the answer) encloses the agents' interval whenever it was there
throughout, so an agents' figure above it, or below zero, can only be clock skew: the
operator's figure is kept then.
"""

from __future__ import annotations

from berth_common.agent_api.models import Revival


def app_downtime(revival: Revival | None, migration_id: str, operator_seconds: float) -> float:
    """Seconds of downtime: the agents' stamps of this migration when they are whole and
    plausible, else the operator's measure."""
    if revival is None or revival.migration_id != migration_id:
        return operator_seconds  # an agent older than the stamps, or another freeze's
    if revival.frozen_at is None or revival.answered_at is None:
        return operator_seconds
    measured = revival.answered_at - revival.frozen_at
    return measured if 0 <= measured <= operator_seconds else operator_seconds
