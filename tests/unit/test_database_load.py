"""The acknowledged-writes client's bookkeeping (berth_lab.writers) against stand-in
connections (mocks, for this fast layer only; tests/databases runs it against real
servers), and what counts as an acknowledged write lost."""

from __future__ import annotations

import io

import pytest

from berth_agent.apps import databases
from berth_lab.database_load import redis_missing
from berth_lab.writers import Ack, Outcome, Refused, longest_gap, read_acks, run_writer

pytestmark = pytest.mark.unit


class FakeServer:
    """Answers writes with a counter; fails the writes and connects it is told to."""

    def __init__(self, fail_writes: set[int], refuse: int = 0) -> None:
        self.counter = 0
        self.fail_writes, self.refuse = fail_writes, refuse
        self.connects: list[str] = []
        self.calls = 0

    def connect(self, address: str) -> FakeServer:
        self.connects.append(address)
        if self.refuse:
            self.refuse -= 1
            raise ConnectionRefusedError(address)
        return self

    def write(self, n: int) -> int:
        self.calls += 1
        if self.calls in self.fail_writes:
            self.counter += 1  # applied, but the answer was lost with the connection
            raise ConnectionResetError("reset")
        self.counter += 1
        return self.counter

    def close(self) -> None:
        pass


def run(server: FakeServer, writes: int, fresh_ids: bool) -> tuple[list[Ack], Outcome]:
    out = io.StringIO()
    outcome = run_writer(
        server.connect, ["a", "b"], out, lambda: server.calls >= writes, fresh_ids=fresh_ids
    )
    return read_acks(out.getvalue()), outcome


def test_a_write_whose_answer_is_lost_is_not_recorded_and_the_client_reconnects() -> None:
    server = FakeServer(fail_writes={3}, refuse=1)
    acks, outcome = run(server, writes=6, fresh_ids=False)
    # Redis's answers are the record: 3 was applied unanswered, so 4 follows 2.
    assert [a.n for a in acks] == [1, 2, 4, 5, 6]
    assert outcome.acked == 5 and outcome.reconnects == 1 and outcome.failures == 2
    # a refused, b answered; after the break, a first again.
    assert server.connects == ["a", "b", "a"]


def test_a_refused_write_stops_the_writer() -> None:
    class Refusing(FakeServer):
        def write(self, n: int) -> int:
            if n == 3:
                raise Refused("duplicate key")
            return super().write(n)

    server = Refusing(fail_writes=set())
    acks, outcome = run(server, writes=10, fresh_ids=True)
    assert [a.n for a in acks] == [1, 2]
    assert outcome.refused == "duplicate key"


def test_postgres_ids_are_never_reused_after_a_break() -> None:
    server = FakeServer(fail_writes={2})
    acks, _ = run(server, writes=4, fresh_ids=True)
    assert [a.n for a in acks] == [1, 3, 4]  # id 2 is unknown: maybe committed, never reused


def test_the_longest_gap_is_between_acknowledged_writes_in_a_row() -> None:
    acks = read_acks("1 100.0\n2 100.5\n3 102.25\n4 102.3\n")
    assert longest_gap(acks) == pytest.approx(1.75)
    assert longest_gap(acks[:1]) == 0.0


def test_redis_loses_writes_when_the_counter_is_behind_or_went_back() -> None:
    acks = [Ack(n, 0.0) for n in (1, 2, 4, 5)]
    assert redis_missing(5, acks) == []
    assert redis_missing(4, acks) == [5]  # the last acknowledged INCR is not there
    # A server that lost writes counts them again: its answers repeat.
    assert redis_missing(9, [*acks, Ack(3, 0.0), Ack(4, 0.0)]) == [3, 4]


def test_the_database_rootfs_key_follows_its_recipe() -> None:
    recipe = databases.RECIPE
    assert recipe.key("amd64") == recipe.key("amd64")
    assert recipe.key("amd64") != recipe.key("arm64")
    changed = type(recipe)(recipe.name, (*recipe.packages, "procps"), recipe.files)
    assert changed.key("amd64") != recipe.key("amd64")
