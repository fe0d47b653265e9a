"""What a failed create or start means for the placement (pure).

An agent that refuses to create the repository because of what the spec asks (an unknown
template, a size larger than its whole datastore, a feature the host lacks) would refuse
every retry the same way: the placement stalls at once, so `kubectl wait`, Flux and
Argo CD see the reason instead of waiting out their timeouts. Anything else (no answer,
a conflict, a daemon that failed to start) may pass: it is tried again.
"""

from __future__ import annotations

from berth_common.agent_api.errors import AgentError, AgentRefused
from berth_operator.placement.conditions import Verdict
from berth_operator.placement.reasons import Reason

# The agent's refusals of a create that no retry changes, by HTTP status.
LASTING = {
    400: Reason.INVALID_SPEC,
    501: Reason.UNSUPPORTED,
    507: Reason.DATASTORE_TOO_SMALL,  # at create: the size exceeds the datastore's total
}


def failed_verdict(err: AgentError, machine: str, *, creating: bool) -> Verdict:
    """Stalled with the agent's reason when the refusal lasts, else Reconciling
    (AgentError) until the next try."""
    doing = "create" if creating else "start"
    if creating and isinstance(err, AgentRefused) and err.status in LASTING:
        return Verdict(
            False,
            False,
            True,
            LASTING[err.status],
            f"{machine} refused to {doing} it: {err.message}",
        )
    return Verdict(
        False, True, False, Reason.AGENT_ERROR, f"{machine} could not {doing} it: {err.message}"
    )
