"""Faults in the middle of a move, on the lab with the real operator and agents.

Each test moves the same application (pulse + ledger: berth_lab.workloads) from the machine
it runs on to the other one while something fails, then checks that it runs on exactly
one machine with pulse's counter unbroken and every acknowledged ledger record kept, and
that no mount, loop device or daemon of the repository was left behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from berth_common.crash import EXIT_CODE
from berth_common.process import run
from berth_lab import Lab, manifests
from berth_lab.cluster import LabCluster, OperatorProcess
from berth_lab.kubeconfig import Kubectl
from berth_lab.workloads import ledger_acks, pulse_and_ledger
from e2e.helpers import condition, fill, kubectl_berth, move, placement, until, wait_current
from faults.workload import (
    PEM_IN_BASE64,
    assert_intact,
    fill_up,
    leftovers,
    place,
    pulse_gap,
    running_on,
)

pytestmark = pytest.mark.faults
APP, PORT = "ledger-app", 8090


@pytest.fixture(scope="module")
def app(cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str) -> Iterator[str]:
    place(kubectl, namespace, APP, "host-a", PORT)
    wait_current(kubectl, namespace, APP)
    until("ledger to acknowledge records", lambda: ledger_acks(lab, "host-a", APP), 60)
    yield APP


def where(kubectl: Kubectl, namespace: str) -> tuple[str, str]:
    """(the machine it runs on, the other one)."""
    current = placement(kubectl, namespace, APP)["status"]["currentMachine"]
    return current, "host-b" if current == "host-a" else "host-a"


def acked(lab: Lab, host: str) -> int:
    seen = ledger_acks(lab, host, APP)
    assert seen, f"ledger acknowledged nothing on {host}"
    return max(seen)


def settled_on(kubectl: Kubectl, namespace: str, machine: str) -> dict[str, Any]:
    obj = wait_current(kubectl, namespace, APP, timeout=300)
    status: dict[str, Any] = obj["status"]
    assert status["currentMachine"] == machine, status
    return status


def ended(kubectl: Kubectl, namespace: str, result: str) -> Callable[[], dict[str, Any] | None]:
    """A check for until(): the last migration, once it ended with result."""

    def check() -> dict[str, Any] | None:
        last = placement(kubectl, namespace, APP)["status"].get("lastMigration") or {}
        return last if last.get("result") == result else None

    return check


def assert_moved(kubectl: Kubectl, namespace: str, lab: Lab, target: str, before: int) -> None:
    """The move, or its retry, ended Succeeded on target: the application runs there
    alone, intact, and nothing is left behind."""
    status = settled_on(kubectl, namespace, target)
    assert status["lastMigration"]["result"] == "Succeeded", status["lastMigration"]
    assert assert_intact(lab, APP, before).host == target, status
    assert_nothing_left(lab)


def move_stopping_at(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, app: str, target: str, point: str
) -> None:
    """Move app to target with the operator set to exit at crash point `point`; returns
    once it has (status shows the move there). The caller starts it again."""
    operator.crash_at(point)
    try:
        move(kubectl, namespace, app, target)
        assert operator.wait_exit(timeout=120) == EXIT_CODE, operator.log_tail()
    finally:
        operator.crash_file.unlink(missing_ok=True)


@contextlib.contextmanager
def transfer_limited(kubectl: Kubectl, namespace: str, rate: str) -> Iterator[None]:
    """The app's transfers held to `rate` bytes per second (a bulk sync lasting seconds)."""

    def limit(value: str | None) -> None:
        patch = json.dumps({"spec": {"transfer": {"bandwidthLimit": value}}})
        kubectl("patch", "-n", namespace, f"rp/{APP}", "--type", "merge", "-p", patch)

    limit(rate)
    try:
        yield
    finally:
        limit(None)


def assert_nothing_left(lab: Lab) -> None:
    # A stopped dockerd's shims take a moment to go: look again before calling it a leak.
    left = leftovers(lab)
    for _ in range(50):
        if not left:
            return
        time.sleep(0.2)
        left = leftovers(lab)
    assert left == [], left


@pytest.mark.parametrize(
    "point",
    [
        "Preparing",
        "BulkSync",
        "Cutover",
        "Cutover.frozen",  # the source is frozen, nothing sent yet
        "Verifying",
        "Verifying.answered",  # the target runs it, the operator has not recorded that
        "Finalizing",
        # Each step done and its outcome not yet written to status: the restarted
        # operator replays the step from what status says.
        "Preparing.stepped",
        "BulkSync.stepped",
        "Cutover.stepped",  # frozen, sent, restored on the target: status says Verifying
        "Finalizing.stepped",  # the source taken down: status says Finalizing
    ],
)
def test_operator_killed_in_each_phase(
    point: str, cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    operator = cluster.operator
    assert operator is not None
    source, target = where(kubectl, namespace)
    before = acked(lab, source)
    operator.crash_at(point)
    try:
        move(kubectl, namespace, app, target)
        assert operator.wait_exit(timeout=120) == EXIT_CODE, operator.log_tail()
    finally:  # a point never reached must not fire in a later test
        operator.crash_file.unlink(missing_ok=True)
        if operator.proc is None:
            operator.start()
    assert_moved(kubectl, namespace, lab, target, before)
    # The downtime reported is what the application lived through, not the operator's
    # absence: within pulse's beat (0.2 s, its silence can begin up to one beat before
    # the freeze), 0.05 s of Docker's log timestamps, and the target's port probe after
    # the restore (its answer ends the downtime; on a loaded machine pulse's first beat
    # came 0.251 s before it) of its own longest silence.
    last = placement(kubectl, namespace, APP)["status"]["lastMigration"]
    started = dt.datetime.fromisoformat(last["startedAt"].replace("Z", "+00:00"))
    gap = pulse_gap(lab, target, APP, started.replace(tzinfo=None))
    downtime = last["downtimeSeconds"]
    print(f"\n[faults] {point}: downtimeSeconds {downtime:.3f}, pulse silent {gap:.3f}s")
    assert abs(downtime - gap) <= 0.3, (downtime, gap)


@pytest.mark.parametrize("point", ["push.sending", "freeze.frozen", "up.restoring", "up.restored"])
def test_agent_killed_mid_move(
    point: str, cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    """push.sending kills the source's agent during the bulk sync, freeze.frozen during
    the cutover (its application checkpointed, its filesystem frozen); up.restoring and
    up.restored kill the target's agent with its dockerd up, before and after CRIU
    restored the containers. The agent is restarted and adopts what it had mounted."""
    source, target = where(kubectl, namespace)
    victim = target if point.startswith("up.") else source
    before = acked(lab, source)
    lab.host(victim).crash_agent_at(point)
    try:
        move(kubectl, namespace, app, target)
        lab.wait_agent_exit(victim)
        time.sleep(2)  # the operator meets a dead agent for a while
    finally:  # a point never reached must not fire in a later test
        (lab.host(victim).plan.datastore_mount / "crash-at").unlink(missing_ok=True)
        if lab.host(victim).agent_pid is None:
            lab.start_agent(lab.host(victim))
    assert_moved(kubectl, namespace, lab, target, before)


def test_link_cut_during_bulk_sync_then_restored(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    source, target = where(kubectl, namespace)
    fill(lab, source, app, 150)  # with the limit below, the bulk sync takes seconds
    before = acked(lab, source)
    link = lab.host(source).plan.veth_root  # the source's cable to the lab's switch
    with transfer_limited(kubectl, namespace, "20M"):
        move(kubectl, namespace, app, target)
        until("the bulk sync to send", lambda: progress(kubectl, namespace), 60)
        run(["ip", "link", "set", link, "down"])
        try:
            time.sleep(5)
        finally:
            run(["ip", "link", "set", link, "up"])
        assert_moved(kubectl, namespace, lab, target, before)


def test_target_unreachable_after_the_freeze_rolls_back_then_moves_once_back(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    """The operator dies right after the freeze; the target's link is cut before it comes
    back. The target was never told to start the application, and whatever it received
    is marked as the source's, so the source resumes instead of waiting frozen for the
    target. Once the link is back, the retry moves it."""
    operator = cluster.operator
    assert operator is not None
    source, target = where(kubectl, namespace)
    before = acked(lab, source)
    link = lab.host(target).plan.veth_root
    operator.crash_at("Cutover.frozen")
    try:
        move(kubectl, namespace, app, target)
        assert operator.wait_exit(timeout=120) == EXIT_CODE, operator.log_tail()
        run(["ip", "link", "set", link, "down"])
        operator.start()
        last = until("the move to roll back", ended(kubectl, namespace, "RolledBack"), 120, 0.2)
        print(f"\n[faults] target unreachable after the freeze: {last['reason']}")
        assert target in last["reason"], last
        with lab.agent(source) as agent:
            status = agent.status(APP)
        assert not status.quiesced and status.frozen_by is None, status
        assert all(c.state == "running" for c in status.containers), status
    finally:
        operator.crash_file.unlink(missing_ok=True)
        if operator.proc is None:
            operator.start()
        run(["ip", "link", "set", link, "up"])
    assert_moved(kubectl, namespace, lab, target, before)  # by the retry, 15 s later


@pytest.mark.parametrize(
    "point", ["Cutover.stepped", "Verifying", "Verifying.answered", "Finalizing"]
)
def test_a_target_silent_after_the_freeze_never_leaves_the_app_on_two_machines(
    point: str, cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    """Fencing, from the freeze to Finalizing. The operator stops at `point`, the
    target's link is cut, and the operator comes back to a silent target for 8 s. The
    target may already run the application (it may have been told to start it and the
    answer lost), so the source is never resumed meanwhile: checked every second, the
    source does not run it. Once the link is back the move ends on the target alone,
    counter and records intact."""
    operator = cluster.operator
    assert operator is not None
    source, target = where(kubectl, namespace)
    before = acked(lab, source)
    link = lab.host(target).plan.veth_root
    move_stopping_at(operator, kubectl, namespace, app, target, point)
    run(["ip", "link", "set", link, "down"])
    try:
        operator.start()
        for _ in range(8):
            time.sleep(1)
            with lab.agent(source) as agent:
                held = agent.status(APP)
            runs = (
                held.mounted
                and held.docker.running
                and not held.quiesced
                and all(c.state == "running" for c in held.containers)
            )
            assert not runs, f"{point}: {APP} runs on {source} while {target} may run it"
        phase = (placement(kubectl, namespace, APP)["status"].get("migration") or {}).get("phase")
        print(f"\n[faults] {point}: {target} silent for 8 s; the move waits in {phase}, "
              f"{source} holds it frozen or stopped")  # fmt: skip
    finally:
        run(["ip", "link", "set", link, "up"])
    assert_moved(kubectl, namespace, lab, target, before)


def test_restore_failing_on_the_target_resumes_on_the_source_then_moves(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    """Something holds the application's port on the target, so restoring it there fails
    after the freeze: the source takes it back with its memory; the retry, once the port
    is free, moves it."""
    source, target = where(kubectl, namespace)
    before = acked(lab, source)
    squatter = subprocess.Popen(
        [*lab.host(target).nsenter(), "busybox", "nc", "-l", "-p", str(PORT)],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        move(kubectl, namespace, app, target)
        last = until("the move to roll back", ended(kubectl, namespace, "RolledBack"), 180, 0.2)
        print(f"\n[faults] restore failing on the target: {last['reason'][:160]}")
        assert last["reason"].startswith("Verifying"), last
        intact = assert_intact(lab, app, before)
        assert intact.host == source
        assert_nothing_left(lab)
        with lab.agent(target) as agent:
            copy = next(r for r in agent.repositories() if r.name == APP)
        assert copy.moved_to == source and not copy.mounted, copy
    finally:
        squatter.kill()
        squatter.wait()
    assert_moved(kubectl, namespace, lab, target, before)  # by the retry, 15 s later


BACKOFF = (2.0, 12.0, 3.0)  # seconds; the long middle wait spans an operator restart


def rfc3339(moment: str) -> float:
    return dt.datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def test_a_move_that_keeps_failing_backs_off_then_stalls_until_the_spec_changes(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    """The target's port stays held, so every attempt rolls back. With the back-off
    shortened to 2 s / 12 s / 3 s (BERTH_RETRY_BACKOFF, configuration), each attempt
    starts no sooner than its wait after the last one ended, the 12 s wait included
    although the operator is restarted in the middle of it (the wait is read back from
    status.retry); the fourth failure stalls the placement (Stalled=MigrationFailed,
    announced once) and no fifth attempt starts; setting spec.machine back to where it
    runs settles it there, intact."""
    operator = cluster.operator
    assert operator is not None
    source, target = where(kubectl, namespace)
    before = acked(lab, source)
    operator.stop()
    operator.extra_env["BERTH_RETRY_BACKOFF"] = ",".join(f"{s:g}" for s in BACKOFF)
    operator.start()
    hold = (f"import socket, time; s = socket.socket(); s.bind(('0.0.0.0', {PORT})); "
            "s.listen(); time.sleep(3600)")  # fmt: skip
    squatter = subprocess.Popen(
        [*lab.host(target).nsenter(), sys.executable, "-c", hold], stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(0.5)
        move(kubectl, namespace, app, target)

        def backing_off_after(attempts: int) -> dict[str, Any] | None:
            status = placement(kubectl, namespace, APP).get("status") or {}
            retry = status.get("retry") or {}
            waiting = retry.get("attempts") == attempts and not status.get("migration")
            return status if waiting else None

        waiting = until("the wait after the second failure", lambda: backing_off_after(2), 120, 0.3)
        left = waiting["retry"]["notBefore"] - time.time()
        print(f"\n[faults] restarting the operator {left:.1f}s before the third attempt is due")
        operator.stop()
        operator.start()

        def stalled() -> dict[str, Any] | None:
            obj = placement(kubectl, namespace, APP)
            found = condition(obj, "Stalled")
            return obj if found.get("reason") == "MigrationFailed" else None

        obj = until("Stalled=MigrationFailed", stalled, 300, 0.5)
        status = obj["status"]
        print(f"[faults] {condition(obj, 'Stalled')['message'][:200]}")
        attempts = list(reversed(status["history"][:4]))  # oldest first
        for record in attempts:
            print(f"[faults]   {record['id']}: {record['result']} "
                  f"{record['startedAt']} -> {record['finishedAt']}")  # fmt: skip
        assert status["retry"]["attempts"] == 4
        assert [h["result"] for h in attempts] == ["RolledBack"] * 4
        assert len({h["id"] for h in attempts}) == 4
        for wait, ended_, next_ in zip(BACKOFF, attempts[:-1], attempts[1:], strict=True):
            waited = rfc3339(next_["startedAt"]) - rfc3339(ended_["finishedAt"])
            print(f"[faults]   waited {waited:.2f}s (back-off {wait:g}s)")
            assert waited >= wait - 0.01, f"attempt {next_['id']} began {waited:.2f}s after"
        time.sleep(2 * max(BACKOFF))  # longer than any back-off: no fifth attempt
        again = placement(kubectl, namespace, APP)["status"]
        assert again["history"][0]["id"] == status["history"][0]["id"], "a fifth attempt ran"
        events = kubectl.json(
            "get", "events", "-n", namespace,
            "--field-selector", f"involvedObject.name={APP},reason=MigrationFailed",
        )["items"]  # fmt: skip
        assert len(events) == 1, f"the stall was announced {len(events)} times"
        assert assert_intact(lab, app, before).host == source
    finally:
        squatter.kill()
        squatter.wait()
        operator.stop()
        operator.extra_env.pop("BERTH_RETRY_BACKOFF", None)
        operator.start()
    move(kubectl, namespace, app, source)  # a new generation: the stall is over
    settled = settled_on(kubectl, namespace, source)
    assert condition({"status": settled}, "Stalled")["status"] == "False"
    assert_nothing_left(lab)


def assert_cancelled_in_place(
    kubectl: Kubectl, namespace: str, lab: Lab, migration: str, phase: str, before: int
) -> dict[str, Any]:
    """Migration `migration` ended Cancelled in `phase`, the placement is Ready where it
    ran, the application never stopped there (pulse's longest silence is its beat, not
    a freeze), and nothing was left behind."""

    def ended_it() -> dict[str, Any] | None:
        last = placement(kubectl, namespace, APP)["status"].get("lastMigration") or {}
        return last if last.get("id") == migration else None

    last: dict[str, Any] = until(f"{migration} to end", ended_it, 120, 0.3)
    assert last["result"] == "Cancelled", last
    source = last["from"]
    assert last["reason"] == f"cancelled in {phase}: spec.machine is {source} again", last
    assert last.get("cutoverAt") is None and last.get("downtimeSeconds") is None
    status = settled_on(kubectl, namespace, source)
    assert "retry" not in status and status["lastMigration"]["result"] == "Cancelled"
    started = dt.datetime.fromisoformat(last["startedAt"].replace("Z", "+00:00"))
    gap = pulse_gap(lab, source, APP, started.replace(tzinfo=None))
    print(f"\n[faults] cancelled in {phase}: {last['id']}; pulse's longest silence {gap:.2f}s")
    assert gap < 1.0, f"pulse was silent {gap:.2f}s on {source}: it stopped"
    assert assert_intact(lab, APP, before).host == source
    assert_nothing_left(lab)
    return last


@pytest.mark.parametrize("point", ["Pending", "Preparing", "Cutover"])
def test_a_move_cancelled_before_its_commit_point_stays_where_it_runs(
    point: str, cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    """The operator stops at the start of `point` (its crash point), the move recorded
    there in status; `kubectl berth cancel` sets spec.machine back to the source while
    it is away; the restarted operator ends the move Cancelled. Cutover counts: its
    freeze's moment is not recorded yet, so the commit point is still ahead."""
    operator = cluster.operator
    assert operator is not None
    source, target = where(kubectl, namespace)
    before = acked(lab, source)
    move_stopping_at(operator, kubectl, namespace, app, target, point)
    migration = placement(kubectl, namespace, APP)["status"]["migration"]
    assert migration["phase"] == point and migration.get("frozen_at_epoch") is None
    try:
        cancel = kubectl_berth(kubectl, "-n", namespace, "cancel", APP, "-o", "json")
        asked = placement(kubectl, namespace, APP)
        moving = asked["status"]["migration"]
        print(f"\n[faults] after the cancel: spec.machine {asked['spec']['machine']}, "
              f"moving {moving['source']} -> {moving['target']} in {moving['phase']}")  # fmt: skip
    finally:
        operator.start()
    assert cancel.returncode == 0, cancel.stderr
    report = json.loads(cancel.stdout)
    assert (report["migration"], report["from"], report["phase"]) == (
        migration["id"],
        source,
        point,
    )
    assert_cancelled_in_place(kubectl, namespace, lab, migration["id"], point, before)


def test_a_bulk_sync_under_way_is_cancelled_at_once(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    """A slow bulk round (120 MiB at 10 MB/s) is interrupted mid-stream by
    `kubectl berth cancel --wait`; its transfer is freed on both machines."""
    source, target = where(kubectl, namespace)
    fill(lab, source, APP, 120)
    try:
        with transfer_limited(kubectl, namespace, "10M"):
            before = acked(lab, source)
            move(kubectl, namespace, app, target)
            migration = until(
                "the first bulk round to be under way", lambda: progress(kubectl, namespace), 120
            )
            asked = time.monotonic()
            cancel = kubectl_berth(kubectl, "-n", namespace, "cancel", APP, "--wait")
            took = time.monotonic() - asked
            print(f"\n[faults] {cancel.stdout.strip()} ({took:.1f}s)")
            assert cancel.returncode == 0, cancel.stderr
            assert took < 10, f"the cancel took {took:.1f}s: it waited for the round to end"
            last = assert_cancelled_in_place(
                kubectl, namespace, lab, migration["id"], "BulkSync", before
            )
            assert last["bulkBytes"] == 0, "a round ended before the cancel (too fast to test)"
    finally:
        lab.host(source).run(["sh", "-c", "rm -f /var/lib/berth/mounts/*/data.bin"])


@pytest.mark.parametrize("point", ["Cutover.frozen", "Verifying", "Finalizing"])
def test_a_cancel_after_the_commit_point_is_refused_and_the_move_ends(
    point: str, cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    """Stopped at `point` (the application frozen, or already on the target), the
    operator is away; `kubectl berth cancel` refuses with the reason and changes
    nothing; the restarted operator completes the move."""
    operator = cluster.operator
    assert operator is not None
    source, target = where(kubectl, namespace)
    before = acked(lab, source)
    move_stopping_at(operator, kubectl, namespace, app, target, point)
    generation = placement(kubectl, namespace, APP)["metadata"]["generation"]
    try:
        cancel = kubectl_berth(kubectl, "-n", namespace, "cancel", APP)
    finally:
        operator.start()
    print(f"\n[faults] {point}: {cancel.stderr.strip()}")
    assert cancel.returncode == 1 and "is past its commit point" in cancel.stderr
    assert f"kubectl berth migrate {APP} --to {source}" in cancel.stderr
    assert placement(kubectl, namespace, APP)["metadata"]["generation"] == generation
    assert_moved(kubectl, namespace, lab, target, before)


def test_a_repository_larger_than_the_datastore_stalls_at_once(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str
) -> None:
    """16 TiB asked of a 30 GiB datastore: the agent refuses (507), no retry could change
    that, so the placement is Stalled at once with the agent's reason, announced by one
    Warning event, and nothing is created."""
    name = "too-big"
    kubectl.apply(manifests.placement(name, namespace, "host-a", pulse_and_ledger(8096), "16T"))
    try:

        def stalled() -> dict[str, Any] | None:
            obj = placement(kubectl, namespace, name)
            return obj if condition(obj, "Stalled").get("status") == "True" else None

        obj = until("Stalled", stalled, 60, 0.3)
        said = condition(obj, "Stalled")
        print(f"\n[faults] {said['reason']}: {said['message']}")
        assert (obj["status"]["phase"], said["reason"]) == ("Stalled", "DatastoreTooSmall")
        assert said["message"].startswith("host-a refused to create it: size 16T exceeds")
        assert condition(obj, "Reconciling")["status"] == "False"
        time.sleep(3)  # the operator's poll is 1 s here: no retry, no second event
        events = kubectl.json(
            "get", "events", "-n", namespace,
            "--field-selector", f"involvedObject.name={name},reason=DatastoreTooSmall",
        )["items"]  # fmt: skip
        assert len(events) == 1, events
        with lab.agent("host-a") as agent:
            assert name not in {r.name for r in agent.repositories()}
    finally:
        kubectl("delete", "-n", namespace, f"rp/{name}", "--wait=false")


def test_conflicting_edits_of_the_machine_end_on_the_last_one(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    """spec.machine set to the other machine, and set back once that move is past its
    commit point (the operator stopped at Verifying, the edit made while it is away): the
    running move completes, then the repository moves back. It ends on the machine the
    last edit named, having run on one machine at a time. (Set back before the commit
    point, the move is cancelled instead: the cancel tests.)"""
    operator = cluster.operator
    assert operator is not None
    source, target = where(kubectl, namespace)
    before = acked(lab, source)
    move_stopping_at(operator, kubectl, namespace, app, target, "Verifying")
    move(kubectl, namespace, app, source)  # the conflicting edit, past the commit point
    operator.start()
    status = settled_on(kubectl, namespace, source)
    moves = [(h["from"], h["to"], h["result"]) for h in status["history"][:2]]
    assert moves == [(target, source, "Succeeded"), (source, target, "Succeeded")], moves
    assert assert_intact(lab, app, before).host == source
    assert_nothing_left(lab)


def test_agent_restarted_while_the_application_runs_adopts_it(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    source, _ = where(kubectl, namespace)
    before = acked(lab, source)
    with lab.agent(source) as agent:
        dockerd = agent.status(APP).docker.pid
    lab.stop_agent(lab.host(source))  # SIGKILL
    time.sleep(2)  # ledger goes on writing without its agent
    lab.start_agent(lab.host(source))
    with lab.agent(source) as agent:
        assert agent.status(APP).docker.pid == dockerd, "a second dockerd was started"
    assert assert_intact(lab, app, before).host == source
    assert_nothing_left(lab)
    obj = wait_current(kubectl, namespace, APP)
    assert obj["status"]["currentMachine"] == source


def progress(kubectl: Kubectl, namespace: str) -> dict[str, Any] | None:
    """The migration, once its bulk sync reports sending."""
    migration = placement(kubectl, namespace, APP)["status"].get("migration") or {}
    under_way = migration.get("phase") == "BulkSync" and migration.get("progress")
    return migration if under_way else None


def test_target_datastore_full_fails_cleanly_then_moves_once_there_is_room(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, app: str
) -> None:
    source, target = where(kubectl, namespace)
    before = acked(lab, source)
    ballast = fill_up(lab.host(target).plan.datastore_mount, leave=8 * 2**20)
    try:
        move(kubectl, namespace, app, target)

        def refused() -> dict[str, Any] | None:
            last = placement(kubectl, namespace, APP)["status"].get("lastMigration") or {}
            return last if last.get("result") == "Failed" else None

        last = until("the migration to fail for want of space", refused, 120, 0.2)
        # Refused up front ("has 8.0 MiB free"), or, had the estimate let it start, when
        # the target's datastore filled up ("datastore is full"): either way, said so.
        assert "free" in last["reason"] or "full" in last["reason"], last
        assert target in last["reason"], last
        print(f"\n[faults] datastore full: {last['reason']}")
        assert_intact(lab, app, before)
        assert running_on(lab, app) == [source]
        assert_nothing_left(lab)
        with lab.agent(target) as agent:  # at most the stale copy an earlier move left
            copies = [r for r in agent.repositories() if r.name == app]
            assert all(r.moved_to and not r.mounted for r in copies), copies
    finally:
        shutil.rmtree(ballast)
    assert_moved(kubectl, namespace, lab, target, before)  # by the retry, once there is room


def test_no_token_reaches_the_operators_log_status_or_events(
    cluster: LabCluster, kubectl: Kubectl, namespace: str, app: str
) -> None:
    """Every move above carried signed transfer tokens; none may have been written down."""
    assert cluster.operator is not None
    written = {
        "operator log": cluster.operator.log_path.read_text(errors="replace"),
        "placements": kubectl("get", "rp", "-n", namespace, "-o", "json").stdout,
        "machines": kubectl("get", "machines.berth.dev", "-o", "json").stdout,
        "events": kubectl("get", "events", "-n", namespace, "-o", "json").stdout,
    }
    assert "lastMigration" in written["placements"], "no migration happened in this module"
    for where, text in written.items():
        assert PEM_IN_BASE64 not in text, f"a transfer token was written to the {where}"
