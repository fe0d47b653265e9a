"""The operator's pure decisions and status conditions."""

from __future__ import annotations

import pytest

from berth_api.v1alpha1 import RepositoryPlacementSpec, RepositoryPlacementStatus
from berth_operator.migration.retry import RetryPolicy, RetryView, retry_view
from berth_operator.placement.conditions import Verdict, already_said, build_conditions
from berth_operator.placement.decide import (
    Cancel,
    Continue,
    Copy,
    Create,
    MachineView,
    Migrate,
    Observed,
    Settled,
    Stall,
    Start,
    Wait,
    decide,
)
from berth_operator.placement.deletion import deletion_has_work
from berth_operator.placement.observe import observe
from berth_operator.placement.reasons import Reason

pytestmark = pytest.mark.unit


def machines(**overrides: dict[str, object]) -> dict[str, MachineView]:
    out = {}
    for name in ("a", "b"):
        fields: dict[str, object] = {
            "name": name,
            "ready": True,
            "cordoned": False,
            "migrations": 0,
            "max_migrations": 1,
        }
        fields.update(overrides.get(name, {}))
        out[name] = MachineView(**fields)  # type: ignore[arg-type]
    return out


def observed(desired: str = "b", copies: list[Copy] | None = None, **kw: object) -> Observed:
    fields: dict[str, object] = {
        "desired": desired,
        "has_template": True,
        "machines": machines(),
        "copies": copies if copies is not None else [Copy("a", True, False)],
        "migration_in_flight": False,
        "cluster_migrations": 0,
        "cluster_max_migrations": 4,
    }
    fields.update(kw)
    return Observed(**fields)  # type: ignore[arg-type]


def test_running_elsewhere_migrates() -> None:
    action = decide(observed())
    assert isinstance(action, Migrate) and (action.source, action.target) == ("a", "b")


def test_in_flight_migration_continues_even_if_desired_changed() -> None:
    assert isinstance(decide(observed(desired="a", migration_in_flight=True)), Continue)


def test_the_source_asked_for_again_before_the_commit_point_cancels() -> None:
    action = decide(observed(desired="a", migration_in_flight=True, cancel_requested=True))
    assert isinstance(action, Cancel) and action.reason == "Cancelling"


@pytest.mark.parametrize(
    ("phase", "frozen", "desired", "cancel"),
    [
        ("Pending", False, "a", True),
        ("Preparing", False, "a", True),
        ("BulkSync", False, "a", True),
        ("Cutover", False, "a", True),  # its freeze not yet recorded
        ("Cutover", True, "a", False),  # past the commit point: it runs to its end
        ("Verifying", True, "a", False),
        ("BulkSync", False, "c", False),  # asked elsewhere: queued behind this move
        ("BulkSync", False, "b", False),  # the target itself
    ],
)
def test_observe_asks_to_cancel_only_before_the_commit_point(
    phase: str, frozen: bool, desired: str, cancel: bool
) -> None:
    migration = {"id": "m", "repository": "r", "guid": "g", "source": "a", "target": "b",
                 "phase": phase, **({"frozen_at_epoch": 1.0} if frozen else {})}  # fmt: skip
    status = RepositoryPlacementStatus.model_validate({"migration": migration})
    spec = RepositoryPlacementSpec.model_validate({"repository": "r", "machine": desired})
    obs = observe(spec, status, machines(), {}, (), 1, 4, None)
    assert (obs.migration_in_flight, obs.cancel_requested) == (True, cancel)


def test_settled_and_start_and_create() -> None:
    assert isinstance(decide(observed(desired="a")), Settled)
    assert isinstance(decide(observed(desired="a", copies=[Copy("a", False, False)])), Start)
    action = decide(observed(copies=[]))
    assert isinstance(action, Create) and action.machine == "b"


@pytest.mark.parametrize(
    ("obs", "reason"),
    [
        (observed(desired="zz"), "UnknownMachine"),
        (observed(machines=machines(b={"cordoned": True})), "TargetCordoned"),
        (observed(copies=[], has_template=False), "RepositoryNotFound"),
        (observed(copies=[Copy("a", True, False), Copy("b", True, False)]), "SplitBrain"),
        (observed(copies=[Copy("a", False, True)]), "OnlyStaleCopies"),
    ],
)
def test_problems_a_person_must_fix_stall(obs: Observed, reason: str) -> None:
    action = decide(obs)
    assert isinstance(action, Stall) and action.reason == reason


@pytest.mark.parametrize(
    ("obs", "reason"),
    [
        (observed(machines=machines(b={"ready": False})), "MachineNotReady"),
        (observed(machines=machines(a={"ready": False})), "SourceNotReady"),
        (observed(machines=machines(a={"migrations": 1})), "Queued"),
        (observed(machines=machines(b={"migrations": 2, "max_migrations": 2})), "Queued"),
        (observed(cluster_migrations=4), "Queued"),
    ],
)
def test_transient_problems_wait(obs: Observed, reason: str) -> None:
    action = decide(obs)
    assert isinstance(action, Wait) and action.reason == reason


@pytest.mark.parametrize(
    "obs",
    [
        observed(copies=[], unobserved=("a",), ever_placed=True),  # not a second copy
        observed(copies=[], has_template=False, unobserved=("a",)),  # nor "it is gone"
        observed(copies=[Copy("b", False, True)], unobserved=("a",), ever_placed=True),
    ],
)
def test_no_live_copy_seen_while_a_machine_is_unobserved_waits(obs: Observed) -> None:
    action = decide(obs)
    assert isinstance(action, Wait) and action.reason == "MachinesUnobserved"
    assert "a could not be asked" in action.message


def test_a_placement_never_placed_is_created_while_another_machine_is_unobserved() -> None:
    action = decide(observed(copies=[], unobserved=("a",)))
    assert isinstance(action, Create) and action.machine == "b"


def test_a_live_copy_seen_is_acted_on_while_another_machine_is_unobserved() -> None:
    obs = observed(desired="a", unobserved=("b",))
    assert isinstance(decide(obs), Settled)


def test_a_stale_copy_beside_the_live_one_is_ignored() -> None:
    obs = observed(desired="a", copies=[Copy("a", True, False), Copy("b", False, True)])
    assert isinstance(decide(obs), Settled)


def test_conditions_keep_transition_time_while_status_holds() -> None:
    busy = Verdict(
        ready=False, reconciling=True, stalled=False, reason=Reason.MIGRATING, message="moving"
    )
    first = build_conditions([], busy, 2, "t1")
    assert [c["type"] for c in first] == ["Ready", "Reconciling", "Stalled"]
    again = build_conditions(first, busy, 2, "t2")
    assert all(c["lastTransitionTime"] == "t1" for c in again)
    done = build_conditions(again, Verdict(True, False, False, Reason.PLACED, "on b"), 3, "t3")
    ready = {c["type"]: c for c in done}
    assert ready["Ready"]["status"] == "True" and ready["Ready"]["lastTransitionTime"] == "t3"
    assert ready["Stalled"]["lastTransitionTime"] == "t1"  # was False, still False
    assert ready["Ready"]["observedGeneration"] == 3


def test_a_stall_is_announced_once_per_reason_message_and_generation() -> None:
    stall = Verdict(False, False, True, Reason.UNKNOWN_MACHINE, "no Machine named 'zz'")
    fresh: list[dict[str, object]] = []
    assert not already_said(fresh, stall, 2)
    written = build_conditions(fresh, stall, 2, "t1")
    assert already_said(written, stall, 2)
    assert not already_said(written, stall, 3), "a new generation is a new stall"
    other = Verdict(False, False, True, Reason.UNKNOWN_MACHINE, "no Machine named 'yy'")
    assert not already_said(written, other, 2)
    placed = build_conditions(written, Verdict(True, False, False, Reason.PLACED, "on a"), 2, "t2")
    assert not already_said(placed, stall, 2), "stalling again after it cleared"


def test_a_failed_migration_waits_out_its_back_off_then_moves() -> None:
    backing_off = observed(retry=RetryView(attempts=1, limit=4, reason="boom", wait_seconds=14))
    action = decide(backing_off)
    assert isinstance(action, Wait) and action.reason == "BackingOff"
    assert action.retry_after == 14 and "attempt 1 of 4" in action.message
    due = observed(retry=RetryView(attempts=3, limit=4, reason="boom", wait_seconds=0))
    assert isinstance(decide(due), Migrate)


def test_the_last_failed_attempt_stalls_until_the_spec_changes() -> None:
    action = decide(observed(retry=RetryView(attempts=4, limit=4, reason="boom", wait_seconds=0)))
    assert isinstance(action, Stall) and action.reason == "MigrationFailed"
    assert action.message == "4 migrations to b failed; last: boom"


def test_retries_matter_only_while_a_move_is_wanted() -> None:
    exhausted = RetryView(attempts=4, limit=4, reason="boom", wait_seconds=0)
    assert isinstance(decide(observed(desired="a", retry=exhausted)), Settled)
    in_flight = observed(retry=exhausted, migration_in_flight=True)
    assert isinstance(decide(in_flight), Continue)


def test_the_retry_policy_counts_attempts_per_generation() -> None:
    policy = RetryPolicy((15, 60, 240))
    first = policy.after_failure(None, generation=4, reason="x", now=100)
    assert (first.attempts, first.not_before) == (1, 115)
    second = policy.after_failure(first, generation=4, reason="y", now=200)
    assert (second.attempts, second.not_before, second.reason) == (2, 260, "y")
    third = policy.after_failure(second, generation=4, reason="z", now=300)
    assert (third.attempts, third.not_before) == (3, 540)  # the 240 s wait happens
    view = retry_view(third, 4, policy, now=500)
    assert view is not None and not view.exhausted and view.wait_seconds == 40
    fourth = policy.after_failure(third, generation=4, reason="w", now=600)
    assert policy.limit == 4 and fourth.attempts == 4
    exhausted = retry_view(fourth, 4, policy, now=600)
    assert exhausted is not None and exhausted.exhausted
    assert policy.after_failure(fourth, generation=5, reason="x", now=0).attempts == 1
    assert retry_view(fourth, 5, policy, now=0) is None  # a new spec: nothing failed yet


@pytest.mark.parametrize(
    ("spec", "has_work"),
    [
        ({"repository": "r", "machine": "m"}, False),  # Retain by default, no DNS
        ({"repository": "r", "machine": "m", "deletionPolicy": "Retain"}, False),
        ({"repository": "r", "machine": "m", "dns": []}, False),
        ({"repository": "r", "machine": "m", "deletionPolicy": "Delete"}, True),
        ({"repository": "r", "machine": "m", "dns": ["r.example.test"]}, True),
    ],
)
def test_only_a_deletion_with_work_waits_for_the_operator(
    spec: dict[str, object], has_work: bool
) -> None:
    assert deletion_has_work(spec) is has_work


def capped(capacity: int, held: dict[str, int]) -> dict[str, MachineView]:
    return machines(b={"capacity_bytes": capacity, "held_bytes": held})


def test_a_template_larger_than_the_capacity_stalls_before_anything_is_asked() -> None:
    obs = observed(copies=[], machines=capped(10 * 2**30, {}), template_bytes=11 * 2**30)
    action = decide(obs)
    assert isinstance(action, Stall) and action.reason == "DatastoreTooSmall"
    assert action.message == "template.size 11.0 GiB exceeds machine b's capacityBytes (10.0 GiB)"
    fits = observed(copies=[], machines=capped(10 * 2**30, {}), template_bytes=10 * 2**30)
    assert isinstance(decide(fits), Create)


def test_a_move_past_the_targets_capacity_stalls_and_its_own_old_copy_does_not_count() -> None:
    used = [Copy("a", True, False, used_bytes=3 * 2**30)]
    full = observed(copies=used, repository="web", machines=capped(8 * 2**30, {"db": 6 * 2**30}))
    action = decide(full)
    assert isinstance(action, Stall) and action.reason == "TargetOverCapacity"
    assert action.message == (
        "machine b holds 6.0 GiB of its capacityBytes (8.0 GiB); web uses 3.0 GiB"
    )
    stale_self = capped(8 * 2**30, {"db": 4 * 2**30, "web": 3 * 2**30})
    assert isinstance(decide(observed(copies=used, repository="web", machines=stale_self)), Migrate)
    assert isinstance(decide(observed(copies=used, repository="web")), Migrate)  # no cap
