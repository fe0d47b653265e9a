"""ledger (berth_agent.apps.ledger): what its file and log say, and what counts as lost."""

import pytest

from berth_agent.apps import ledger
from berth_lab.workloads import pulse_and_ledger

pytestmark = pytest.mark.unit


def test_a_line_still_being_written_is_not_a_record_yet() -> None:
    assert ledger.records("record 1\nrecord 2\nrec") == [1, 2]
    assert ledger.records("record 1\nrecord 2\n") == [1, 2]
    assert ledger.records("") == []


def test_acks_come_from_dockers_timestamped_log_lines() -> None:
    lines = ["2025-01-01T00:00:00.1Z ack 1", "2025-01-01T00:00:00.2Z ack 2", "noise"]
    assert ledger.acks(lines) == [1, 2]


def test_nothing_lost_when_the_file_holds_every_acknowledged_record() -> None:
    assert ledger.problems([1, 2, 3], [1, 2], acked_before=2) == []


@pytest.mark.parametrize(
    ("written", "acked", "acked_before", "says"),
    [
        ([1, 2, 4], [1, 2], 0, "ledger records: 1..2, 4..4"),
        ([1, 2, 1, 2], [1, 2], 0, "ledger records: 1..2, 1..2"),  # a restarted writer
        ([1, 2], [1, 2], 3, "ledger acknowledged 3 records before the fault; 2 survived"),
        ([1, 2], [1, 2, 3], 0, "ledger acknowledged record 3; the file ends at 2"),
        ([1], [], 0, "ledger acknowledged nothing"),
    ],
)
def test_a_gap_a_repeat_or_a_lost_acknowledged_record_is_named(
    written: list[int], acked: list[int], acked_before: int, says: str
) -> None:
    assert says in ledger.problems(written, acked, acked_before)


def test_the_fault_tests_application_checkpoints_pulse_and_ledger() -> None:
    services = pulse_and_ledger(8090, ledger_interval=0.01).services
    assert [(s.name, s.checkpoint) for s in services] == [("pulse", True), ("ledger", True)]
    assert services[1].environment == {"LEDGER_INTERVAL": "0.01"}
    assert services[0].ports[0].host == 8090
