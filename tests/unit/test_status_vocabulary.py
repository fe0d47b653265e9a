"""Every reason and phase the operator writes is in docs/api.md, and nothing the document
lists is one the operator never writes; a refusal no retry can change stalls at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from berth_common.agent_api.errors import AgentRefused, AgentUnreachable
from berth_operator.placement.reasons import STALLS, Reason, phases
from berth_operator.placement.refusals import failed_verdict

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
API_MD = REPO / "docs" / "api.md"
ARGOCD_TESTDATA = REPO / "gitops" / "argocd" / "berth.dev" / "RepositoryPlacement" / "testdata"


def documented(field: str) -> set[str]:
    """The backticked words (CamelCase) of the status table's row for `field` (the
    table under "## Status fields", up to its next heading)."""
    text = API_MD.read_text().split("\n## Status fields\n", 1)[1]
    table = re.split(r"\n#+ ", text, maxsplit=1)[0]
    rows = [line for line in table.splitlines() if line.startswith(f"| `{field}` |")]
    assert len(rows) == 1, f"docs/api.md: one row for {field}, found {len(rows)}"
    meaning = rows[0].split("|", 2)[2]
    return set(re.findall(r"`([A-Z][A-Za-z]+)`", meaning)) - {"True", "False"}


def test_the_documented_stall_reasons_are_the_operators() -> None:
    assert documented("conditions[Stalled]") == {r.value for r in STALLS}


def test_the_documented_reconciling_reasons_are_the_operators() -> None:
    working = {r.value for r in Reason} - {r.value for r in STALLS} - {Reason.PLACED.value}
    assert documented("conditions[Reconciling]") == working


def test_the_documented_phases_are_the_operators() -> None:
    assert documented("phase") == phases()


def test_argo_cds_examples_show_phases_the_operator_writes() -> None:
    for path in sorted(ARGOCD_TESTDATA.glob("*.yaml")):
        phase = (yaml.safe_load(path.read_text()).get("status") or {}).get("phase")
        assert phase is None or phase in phases(), f"{path.name}: phase {phase}"


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (400, "Invalid", Reason.INVALID_SPEC),
        (501, "Unsupported", Reason.UNSUPPORTED),
        (507, "InsufficientSpace", Reason.DATASTORE_TOO_SMALL),
    ],
)
def test_a_create_refused_for_good_stalls(status: int, code: str, reason: Reason) -> None:
    verdict = failed_verdict(AgentRefused(status, code, "no"), "host-a", creating=True)
    assert (verdict.stalled, verdict.reconciling, verdict.reason) == (True, False, reason)
    assert verdict.message == "host-a refused to create it: no"


@pytest.mark.parametrize(
    ("error", "creating"),
    [
        (AgentRefused(409, "Conflict", "exists"), True),  # a copy a stale look missed
        (AgentRefused(500, "Internal", "dockerd did not start"), True),
        (AgentUnreachable("timed out"), True),
        (AgentRefused(400, "Invalid", "no"), False),  # starting: the copy exists, try again
    ],
)
def test_anything_else_is_tried_again(
    error: AgentRefused | AgentUnreachable, creating: bool
) -> None:
    verdict = failed_verdict(error, "host-a", creating=creating)
    assert (verdict.stalled, verdict.reconciling, verdict.reason) == (
        False,
        True,
        Reason.AGENT_ERROR,
    )
