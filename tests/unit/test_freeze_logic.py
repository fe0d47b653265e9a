"""How a freeze runs its containers' checkpoints and stops, with fakes for dockerd and runc
(the real ones are exercised on the lab by tests/agent and tests/migration)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import docker
import pytest

from berth_agent.checkpoint import freeze as freezing
from berth_agent.checkpoint.runc import RuncCheckpointer
from berth_agent.errors import Refusal
from berth_common.agent_api.models import FreezeRecord
from berth_common.agent_api.services import CHECKPOINT_LABEL

pytestmark = pytest.mark.unit


def test_all_at_once_runs_the_work_together_and_reports_every_outcome() -> None:
    both = threading.Barrier(2, timeout=5)  # a sequential run would wait here in vain

    def meets() -> None:
        both.wait()

    def fails() -> None:
        both.wait()
        raise Refusal("dump failed")

    outcomes = freezing.all_at_once([("a", meets), ("b", fails)])
    assert outcomes["a"].error is None and outcomes["a"].seconds >= 0
    assert isinstance(outcomes["b"].error, Refusal)


class FakeContainer:
    def __init__(self, name: str, checkpoint: bool) -> None:
        self.name, self.id, self.status = name, f"id-{name}", "running"
        self.labels = {CHECKPOINT_LABEL: "true"} if checkpoint else {}


class FakeDocker:
    """What freeze asks of dockerd: the service containers, and their state (stopped: a
    checkpoint's exit is recorded at once here)."""

    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = self.api = self
        self._listed = containers

    def list(self, **_: Any) -> list[FakeContainer]:
        return self._listed

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return {"State": {"Running": False, "Pid": 0}}


class FakeRunc:
    """Checkpoints every container but those named in `fails`."""

    def __init__(self, fails: set[str]) -> None:
        self.fails, self.dumped = fails, set[str]()

    def checkpoint(self, container_id: str, name: str) -> None:
        if container_id in self.fails:
            raise Refusal("criu: Can't dump a connecting socket")
        self.dumped.add(container_id)


def frozen_with(tmp_path: Path, runc: FakeRunc, migration: str = "m-1") -> FreezeRecord:
    client = FakeDocker([FakeContainer("app", True), FakeContainer("db", True)])
    return freezing.freeze(
        cast(docker.DockerClient, client), cast(RuncCheckpointer, runc), tmp_path, migration
    )


def test_a_freeze_checkpoints_every_labelled_container(tmp_path: Path) -> None:
    record = frozen_with(tmp_path, FakeRunc(set()))
    assert sorted(record.checkpointed) == ["app", "db"] and record.complete
    assert set(record.durations) == {"checkpoint:app", "checkpoint:db"}
    assert freezing.read_record(tmp_path) == record
    assert frozen_with(tmp_path, FakeRunc({"id-app"})) == record  # a replay: as it was


def test_a_freeze_that_fails_part_way_records_what_froze_for_resume(tmp_path: Path) -> None:
    with pytest.raises(Refusal, match="checkpoint of db failed"):
        frozen_with(tmp_path, FakeRunc({"id-db"}))
    record = freezing.read_record(tmp_path)
    # app's processes are gone into its checkpoint: resume restores it; db still runs.
    assert record is not None and record.checkpointed == ["app"] and not record.complete
    with pytest.raises(Refusal, match="failed part way"):
        frozen_with(tmp_path, FakeRunc(set()))  # a replay does not take it for done
