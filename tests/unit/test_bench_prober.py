"""bench/prober.py's answers and gaps, and the trees bench/criu_floor.py checkpoints."""

from pathlib import Path

import pytest

from berth_lab.workloads import pulse_and_ledger
from criu_floor import FloorTimes, trees
from prober import Answer, longest_gap, read_answers

pytestmark = pytest.mark.unit


def test_the_gap_is_between_answers_from_either_host_from_the_move_on() -> None:
    answers = [
        Answer(9.0, "a"),  # before the move: not counted
        Answer(10.0, "a"),
        Answer(10.02, "a"),
        Answer(10.5, "b"),  # the target, after the freeze
        Answer(10.52, "b"),
    ]
    assert longest_gap(answers, since=9.5) == pytest.approx(0.48)


def test_a_line_cut_short_by_a_kill_is_no_answer(tmp_path: Path) -> None:
    out = tmp_path / "answers.txt"
    out.write_text("10.000001 10.0.0.11\n10.020001 10.0.0.12\n10.04")
    assert read_answers(out) == [Answer(10.000001, "10.0.0.11"), Answer(10.020001, "10.0.0.12")]


def test_the_bare_floor_checkpoints_the_same_trees_with_pulse_on_a_port_of_its_own() -> None:
    found = trees(pulse_and_ledger(18500, ledger_interval=0.01), port=19500)

    assert [t.name for t in found] == ["pulse", "ledger"]
    assert found[0].argv == ["/usr/bin/pulse"]
    assert found[0].environment["PULSE_PORT"] == "19500"
    assert found[1].environment == {"LEDGER_INTERVAL": "0.01"}


def test_floor_times_add_up() -> None:
    times = FloorTimes(checkpoint=0.08, restore=0.05, answer=0.01)
    assert times.record() == {"checkpoint": 0.08, "restore": 0.05, "answer": 0.01, "total": 0.14}
