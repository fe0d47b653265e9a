"""status.lastMigration.cutoverAt is the freeze request, where the downtime starts; the
target answering is where it ends. Agents are fakes; the clock is the test's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from berth_agent.checkpoint.freeze import grace_seconds
from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.models import (
    FreezeRecord,
    Health,
    PushProgress,
    PushResult,
    Revival,
    UpAnswer,
)
from berth_common.pki import CertFiles, create_ca
from berth_operator.migration.downtime import app_downtime
from berth_operator.migration.driver import MigrationDriver, rest_of_downtime
from berth_operator.migration.listener import Unrecorded
from berth_operator.migration.state import MigrationState, Mode, Phase, timestamp
from berth_operator.placement.status import last_migration
from wire_fakes import health

pytestmark = pytest.mark.unit

FREEZE_REQUESTED = 1_700_000_000.0  # the clock when the driver asks the source to freeze
# What the fake agents take: the handshakes before the freeze, then freeze, push and up.
HANDSHAKE, FREEZE, PUSH, UP = 0.5, 2.0, 1.25, 4.0


class Clock:
    """A wall clock that moves only when a fake agent's call takes time."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


class FakeAgent:
    """What the cutover and the revival ask of an agent; each call moves the clock."""

    def __init__(
        self, clock: Clock, calls: list[tuple[str, float]], revival: Revival | None = None
    ) -> None:
        self.clock, self.calls, self.revival = clock, calls, revival

    def healthz(self) -> Health:
        self.calls.append(("healthz", self.clock()))
        self.clock.at += HANDSHAKE  # before the freeze request
        return health("host")

    def freeze(self, ref: str, migration_id: str, **_: Any) -> FreezeRecord:
        self.calls.append(("freeze", self.clock()))
        self.clock.at += FREEZE
        return FreezeRecord(
            migration_id=migration_id, checkpoint=f"berth-{migration_id}",
            durations={"checkpoint:pulse": 1.5}, checkpointed=["pulse"],
        )  # fmt: skip

    def push(self, *_: Any, **__: Any) -> Iterator[PushProgress | PushResult]:
        self.calls.append(("push", self.clock()))
        self.clock.at += PUSH
        yield PushResult(
            summary="4 KiB", transfer_id="t", mode="delta", image_size=2**30, bytes_planned=4096,
            bytes_sent=4096, base_id="b", root="r", attempts=1, durations={"send": 1.25},
        )  # fmt: skip

    def up(self, ref: str, key: bytes | None = None, **_: Any) -> UpAnswer:
        self.calls.append(("up", self.clock()))
        self.clock.at += UP
        return UpAnswer(durations={"restore": 4.0}, revival=self.revival)

    def close(self) -> None:
        pass


class FakeAgents:
    """revival: what the target's up answers of its last thaw (None: an agent that does
    not stamp it)."""

    def __init__(self, clock: Clock, revival: Revival | None = None) -> None:
        self.calls: list[tuple[str, float]] = []
        self.clock, self.revival = clock, revival

    def client(self, machine: str) -> AgentClient:
        return cast(AgentClient, FakeAgent(self.clock, self.calls, self.revival))

    def endpoint(self, machine: str) -> str:
        return f"https://{machine}:7443"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    directory: Path = tmp_path_factory.mktemp("signer")
    return create_ca(CertFiles(directory / "ca.crt", directory / "ca.key"))


def test_cutover_at_is_the_freeze_request_and_the_downtime_runs_to_the_answer(
    signer: CertFiles,
) -> None:
    clock = Clock(FREEZE_REQUESTED - 2 * HANDSHAKE)  # source's and target's
    agents = FakeAgents(clock)
    state = MigrationState(
        id="m1", repository="pulse", guid="g", source="host-a", target="host-b",
        phase=Phase.CUTOVER, bulk_rounds=[10],
    )  # fmt: skip
    driver = MigrationDriver(agents, signer, Unrecorded(), clock=clock)

    done = driver.advance(state)  # Cutover, then Verifying at once

    assert done.phase == Phase.FINALIZING
    freeze_at = dict(agents.calls)["freeze"]
    assert freeze_at == FREEZE_REQUESTED
    assert done.cutover_at == timestamp(FREEZE_REQUESTED)
    assert done.downtime_seconds == FREEZE + PUSH + UP  # from the request to the answer
    # Every part of it is named: the agents' steps, then the rest (the calls around them).
    # (operator.persist is timed on the real clock: a fraction of a millisecond here.)
    other = (FREEZE - 1.5) + (PUSH - 1.25) + (UP - 4.0)
    assert done.step_seconds["operator.other"] == pytest.approx(other, abs=1e-3)
    assert sum(done.step_seconds.values()) == pytest.approx(done.downtime_seconds)
    record = last_migration(done)
    assert record["cutoverAt"] == "2023-11-14T22:13:20.000Z"


def test_a_replayed_cutover_keeps_the_first_freeze_moment(signer: CertFiles) -> None:
    """An operator restarted while frozen replays Cutover: the downtime and cutoverAt
    still start at the first freeze request, not at the replay."""
    clock = Clock(FREEZE_REQUESTED + 60)  # the restarted operator's replay
    agents = FakeAgents(clock)
    state = MigrationState(
        id="m1", repository="pulse", guid="g", source="host-a", target="host-b",
        phase=Phase.CUTOVER, bulk_rounds=[10], frozen_at_epoch=FREEZE_REQUESTED,
        cutover_at=timestamp(FREEZE_REQUESTED),
    )  # fmt: skip

    done = MigrationDriver(agents, signer, Unrecorded(), clock=clock).advance(state)

    assert done.cutover_at == timestamp(FREEZE_REQUESTED)
    assert done.downtime_seconds == 60 + 2 * HANDSHAKE + FREEZE + PUSH + UP


def test_the_downtime_is_the_agents_own_after_an_operator_restart(signer: CertFiles) -> None:
    """The operator came back 60 s into the freeze; the application was down from the
    source's first stop to the target's first answer, 3.2 s, and that is what is
    reported (the operator's absence is not the application's)."""
    clock = Clock(FREEZE_REQUESTED + 60)
    stamps = Revival(
        migration_id="m1", frozen_at=FREEZE_REQUESTED + 0.1, answered_at=FREEZE_REQUESTED + 3.3
    )
    state = MigrationState(
        id="m1", repository="pulse", guid="g", source="host-a", target="host-b",
        phase=Phase.CUTOVER, bulk_rounds=[10], frozen_at_epoch=FREEZE_REQUESTED,
        cutover_at=timestamp(FREEZE_REQUESTED),
    )  # fmt: skip

    done = MigrationDriver(FakeAgents(clock, stamps), signer, Unrecorded(), clock=clock).advance(
        state
    )

    assert done.downtime_seconds == 3.2
    assert done.cutover_at == timestamp(FREEZE_REQUESTED)  # the request, as documented


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (Revival(migration_id="m1", frozen_at=100.0, answered_at=101.5), 1.5),
        (None, 9.0),  # an agent that does not stamp
        (Revival(migration_id="m0", frozen_at=100.0, answered_at=101.5), 9.0),  # another move
        (Revival(migration_id="m1", frozen_at=100.0), 9.0),  # never answered after the thaw
        (Revival(migration_id="m1", frozen_at=100.0, answered_at=99.0), 9.0),  # skew: < 0
        (Revival(migration_id="m1", frozen_at=100.0, answered_at=120.0), 9.0),  # skew: > 9 s
    ],
)
def test_the_agents_figure_is_taken_only_when_whole_and_plausible(
    stamps: Revival | None, expected: float
) -> None:
    assert app_downtime(stamps, "m1", operator_seconds=9.0) == expected


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert timestamp(1.2345) == "1970-01-01T00:00:01.234Z"


def test_the_rest_of_the_downtime_counts_containers_frozen_together_once() -> None:
    steps = {"freeze.checkpoint:pulse": 0.4, "freeze.checkpoint:ledger": 0.3,
             "up.restore:pulse": 0.9, "up.restore:ledger": 0.8, "up.dockerd": 0.2}  # fmt: skip
    assert rest_of_downtime(1.75, steps) == pytest.approx(0.25)
    assert rest_of_downtime(1.0, steps) == 0.0  # never negative


class StubbornFakeAgent(FakeAgent):
    """A cold move's freeze: a container that ignored its stop signal was killed."""

    asked: dict[str, Any] = {}

    def freeze(self, ref: str, migration_id: str, **options: Any) -> FreezeRecord:
        StubbornFakeAgent.asked = options
        frozen = super().freeze(ref, migration_id)
        return frozen.model_copy(
            update={"durations": {"stop:web": 3.0}, "checkpointed": [],
                    "stopped": ["web", "db"], "killed": ["web"]}
        )  # fmt: skip


def test_a_cold_move_passes_the_grace_period_and_reports_who_was_killed(
    signer: CertFiles,
) -> None:
    clock = Clock(FREEZE_REQUESTED)
    agents = FakeAgents(clock)
    agents.client = lambda machine: cast(AgentClient, StubbornFakeAgent(clock, agents.calls))  # type: ignore[method-assign]
    state = MigrationState(
        id="m1", repository="web", guid="g", source="host-a", target="host-b",
        phase=Phase.CUTOVER, bulk_rounds=[10], mode=Mode.COLD, stop_grace=3,
    )  # fmt: skip

    done = MigrationDriver(agents, signer, Unrecorded(), clock=clock).advance(state)

    assert StubbornFakeAgent.asked["stop_grace"] == 3 and not StubbornFakeAgent.asked["checkpoint"]
    record = last_migration(done)
    assert (record["stoppedContainers"], record["killedContainers"]) == (["web", "db"], ["web"])


@pytest.mark.parametrize(
    ("config", "override", "seconds"),
    [
        ({}, None, 10),  # docker's own default
        ({"StopTimeout": 30}, None, 30),  # the container's
        ({"StopTimeout": 30}, 2, 2),  # the placement's wins
        ({}, 0, 0),  # killed at once
    ],
)
def test_the_grace_period_is_the_placements_then_the_containers_then_dockers(
    config: dict[str, Any], override: int | None, seconds: int
) -> None:
    assert grace_seconds(config, override) == seconds
