"""Pure pieces of a migration: when to cut over, and the state's shape."""

import pytest

from berth_operator.migration.rounds import MAX_ROUNDS, SMALL_ROUND, should_cut_over
from berth_operator.migration.runner import progress_worth_writing
from berth_operator.migration.state import FROZEN, TERMINAL, MigrationState, Phase

pytestmark = pytest.mark.unit
MB = 2**20


@pytest.mark.parametrize(
    ("rounds", "cut"),
    [
        ([], False),
        ([300 * MB], False),  # a first full round: go again
        ([300 * MB, 40 * MB], False),  # shrinking and still big
        ([300 * MB, 40 * MB, 2 * MB], True),  # small enough
        ([300 * MB, 40 * MB, 41 * MB], False),  # grew once: a burst, most likely
        ([300 * MB, 40 * MB, 41 * MB, 20 * MB], False),  # ...it was: shrinking again
        ([300 * MB, 40 * MB, 41 * MB, 41 * MB], True),  # twice: the app writes as fast
        ([20 * MB, 500 * MB, 30 * MB, 4 * MB], True),  # a 500 MB burst carried by rounds
        ([SMALL_ROUND], True),
        ([100 * MB - i for i in range(MAX_ROUNDS)], True),  # the round limit
    ],
)
def test_cut_over_rule(rounds: list[int], cut: bool) -> None:
    assert should_cut_over(rounds) is cut


def test_frozen_phases_are_those_from_the_freeze_until_the_target_holds_everything() -> None:
    assert {Phase.CUTOVER, Phase.VERIFYING, Phase.POST_COPY} == FROZEN
    assert not FROZEN & TERMINAL


def test_state_counts_and_transfer_ids() -> None:
    state = MigrationState(
        id="m1", repository="web", guid="g", source="a", target="b", bulk_rounds=[10, 5]
    )
    assert state.bulk_bytes == 15 and not state.done
    assert state.transfer_id("final") == "m1-final"
    assert MigrationState.model_validate_json(state.model_dump_json()) == state


def test_progress_is_written_once_a_second_but_never_while_frozen() -> None:
    assert progress_worth_writing(Phase.BULK_SYNC, 1.5)
    assert not progress_worth_writing(Phase.BULK_SYNC, 0.5)
    # The final push runs in Cutover: the first progress of a step would be written at
    # once (nothing written yet in this step), inside the downtime.
    assert not progress_worth_writing(Phase.CUTOVER, 1e9)
