"""`kubectl berth migrate --wait` follows a move through the operator's retries."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest

from kubectl_berth.client import Berth
from kubectl_berth.follow import MigrationFailed, follow

pytestmark = pytest.mark.unit


class ScriptedBerth(Berth):
    """A fake of the API (unit layer): each read returns the next placement of a script,
    then the last one for ever."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        self.script = script

    def placement(self, namespace: str, name: str) -> dict[str, Any]:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def _placement(status: dict[str, Any], **conditions: dict[str, Any]) -> dict[str, Any]:
    conds = [{"type": kind, **fields} for kind, fields in conditions.items()]
    return {"status": {"observedGeneration": 2, "conditions": conds, **status}}


def _moving(migration_id: str) -> dict[str, Any]:
    migration = {"id": migration_id, "source": "a", "target": "b", "mode": "live"}
    return _placement({"migration": {**migration, "phase": "Cutover"}})


def _ended(migration_id: str, result: str, **status: Any) -> dict[str, Any]:
    last = {"id": migration_id, "result": result, "reason": "criu failed", "to": "b"}
    return _placement({"migration": None, "lastMigration": last, **status})


def _retry(attempts: int, generation: int = 2) -> dict[str, Any]:
    return {"generation": generation, "attempts": attempts, "notBefore": time.time() + 15}


def test_a_rolled_back_attempt_that_will_be_retried_is_followed_to_the_next() -> None:
    out = io.StringIO()
    berth = ScriptedBerth(
        [
            _moving("m1"),
            _ended("m1", "RolledBack", retry=_retry(1)),
            _moving("m2"),
            _ended("m2", "Succeeded"),
        ]
    )
    last = follow(berth, "ns", "web", generation=2, timeout=10, out=out)
    assert last["id"] == "m2"
    text = out.getvalue()
    assert "attempt 1 RolledBack: criu failed; the source kept running" in text
    assert "migration m2: a -> b (live)" in text
    assert "moved to b" in text


def test_an_attempt_without_a_retry_ends_the_wait() -> None:
    berth = ScriptedBerth([_moving("m1"), _ended("m1", "Failed", retry=_retry(1, generation=1))])
    with pytest.raises(MigrationFailed, match="m1 Failed: criu failed; the source kept running"):
        follow(berth, "ns", "web", generation=2, timeout=10, out=io.StringIO())


def test_a_placement_that_stalls_after_its_last_attempt_ends_the_wait() -> None:
    stalled = {"status": "True", "observedGeneration": 2, "reason": "MigrationFailed"}
    berth = ScriptedBerth(
        [
            _moving("m3"),
            _ended("m3", "RolledBack", retry=_retry(3)),
            _placement(
                {"lastMigration": {"id": "m3", "result": "RolledBack"}, "retry": _retry(3)},
                Stalled=stalled,
            ),
        ]
    )
    with pytest.raises(MigrationFailed, match="stalled: MigrationFailed"):
        follow(berth, "ns", "web", generation=2, timeout=10, out=io.StringIO())
