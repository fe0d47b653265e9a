"""End to end: a real API server, the operator as its ServiceAccount, real lab hosts."""

from __future__ import annotations

import itertools
import json
import time
import urllib.request

import pytest

from berth_lab import Lab
from berth_lab.cluster import LabCluster, OperatorProcess
from berth_lab.kubeconfig import Kubectl
from e2e.helpers import (
    beats,
    condition,
    create_pulse,
    fill,
    move,
    placement,
    until,
    wait_current,
)

pytestmark = pytest.mark.e2e
BEAT = 0.2


def test_kubectl_patch_moves_pulse_with_its_memory(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str
) -> None:
    name = "pulse-move"
    create_pulse(kubectl, namespace, name, "host-a", interval=BEAT)
    created = wait_current(kubectl, namespace, name)
    assert created["status"]["currentMachine"] == "host-a"
    until("pulse to beat on host-a", lambda: len(beats(lab, "a", name)) >= 5, 30)

    move(kubectl, namespace, name, "host-b")
    # kubectl wait, as a user would, once the operator has seen the new generation.
    until(
        "the new generation to be observed",
        lambda: placement(kubectl, namespace, name)["status"].get("observedGeneration") == 2,
        30,
    )
    waited = kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        "--timeout=180s",
        f"rp/{name}",
        timeout=200,
    )
    assert "condition met" in waited.stdout
    obj = wait_current(kubectl, namespace, name)
    status = obj["status"]
    assert status["currentMachine"] == "host-b" and status["phase"] == "Placed"
    last = status["lastMigration"]
    assert last["result"] == "Succeeded" and (last["from"], last["to"]) == ("host-a", "host-b")
    assert last["mode"] == "live" and last["bulkBytes"] > 0 and last["deltaBytes"] > 0
    assert set(last["phaseSeconds"]) >= {
        "Preparing",
        "BulkSync",
        "Cutover",
        "Verifying",
        "Finalizing",
    }
    assert status["history"][0]["id"] == last["id"]

    # The status walked the phases: one Event per phase.
    events = kubectl.json(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "json",
    )["items"]
    reasons = {e["reason"] for e in events}
    assert {
        "MigrationStarted",
        "PhasePreparing",
        "PhaseBulkSync",
        "PhaseCutover",
        "PhaseVerifying",
        "PhaseFinalizing",
        "PhaseSucceeded",
        "Migrated",
    } <= reasons

    # pulse's own heartbeat: one unbroken count, and a gap that matches the downtime.
    until("pulse to beat on host-b", lambda: len(beats(lab, "b", name)) > 0, 30)
    heard = beats(lab, "b", name)
    counters = [c for _, c in heard]
    assert counters == list(range(1, counters[-1] + 1)), "the counter was reset"
    gaps = [(heard[i + 1][0] - heard[i][0]).total_seconds() for i in range(len(heard) - 1)]
    gap = max(gaps)
    assert abs(last["downtimeSeconds"] - gap) < 0.5, (last["downtimeSeconds"], gap)
    with lab.agent("a") as a:
        source = a.status(name)
        assert not source.mounted and not source.docker.running
    print(
        f"\ndowntime {last['downtimeSeconds']:.3f}s, heartbeat gap {gap:.3f}s, "
        f"counter {counters[-1]}"
    )


@pytest.mark.faults
def test_operator_killed_in_bulk_sync_and_in_cutover(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str
) -> None:
    name = "pulse-crash"
    create_pulse(
        kubectl,
        namespace,
        name,
        "host-a",
        port=8081,
        interval=BEAT,
        transfer={"bandwidthLimit": "25M"},
    )
    wait_current(kubectl, namespace, name)
    fill(lab, "a", name, 120)
    operator = cluster.operator
    assert operator is not None

    def migration_phase() -> str | None:
        migration = placement(kubectl, namespace, name)["status"].get("migration") or {}
        phase: str | None = migration.get("phase")
        return phase

    move(kubectl, namespace, name, "host-b")
    until(
        "bulk sync to be under way",
        lambda: (
            migration_phase() == "BulkSync"
            and (placement(kubectl, namespace, name)["status"]["migration"].get("progress"))
        ),
        60,
    )
    operator.kill()
    operator.start()
    # Aim for Cutover; on a loaded machine a poll may land just after it, and a kill in
    # any later phase must be survived as well.
    until(
        "cutover",
        lambda: (
            migration_phase() in ("Cutover", "Verifying", "Finalizing")
            or not placement(kubectl, namespace, name)["status"].get("migration")
        ),
        120,
        0.02,
    )
    operator.kill()
    operator.start()

    obj = wait_current(kubectl, namespace, name, timeout=240)
    status = obj["status"]
    assert status["currentMachine"] == "host-b", status
    assert status["lastMigration"]["result"] == "Succeeded"
    until("pulse to beat on host-b", lambda: len(beats(lab, "b", name)) > 0, 30)
    counters = [c for _, c in beats(lab, "b", name)]
    assert counters == list(range(1, counters[-1] + 1)), "the counter was reset"
    with lab.agent("a") as a:
        assert not a.status(name).docker.running


def test_problems_a_person_must_fix_stall(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str
) -> None:
    name = "pulse-stall"
    create_pulse(kubectl, namespace, name, "host-a", port=8082, interval=1)
    wait_current(kubectl, namespace, name)

    def stalled(reason: str) -> bool:
        obj = placement(kubectl, namespace, name)
        return bool(
            condition(obj, "Stalled").get("reason") == reason
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        )

    move(kubectl, namespace, name, "host-zz")
    until("Stalled=UnknownMachine", lambda: stalled("UnknownMachine"), 30)
    time.sleep(5)  # the operator looks again every 2 s while stalled
    events = kubectl.json(
        "get", "events", "-n", namespace,
        "--field-selector", f"involvedObject.name={name},reason=UnknownMachine",
    )["items"]  # fmt: skip
    assert len(events) == 1, f"a stall was announced {len(events)} times"
    obj = placement(kubectl, namespace, name)
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["status"]["currentMachine"] == "host-a"

    kubectl(
        "patch", "machine.berth.dev/host-b", "--type", "merge", "-p", '{"spec":{"cordoned":true}}'
    )
    try:
        move(kubectl, namespace, name, "host-b")
        until("Stalled=TargetCordoned", lambda: stalled("TargetCordoned"), 30)
        with lab.agent("a") as a:
            assert a.status(name).containers[0].state == "running"
    finally:
        kubectl(
            "patch",
            "machine.berth.dev/host-b",
            "--type",
            "merge",
            "-p",
            '{"spec":{"cordoned":false}}',
        )
    obj = wait_current(kubectl, namespace, name)
    assert obj["status"]["currentMachine"] == "host-b"
    assert condition(obj, "Stalled")["status"] == "False"


@pytest.mark.faults
def test_bad_spec_is_refused_by_the_api_server(
    kubectl: Kubectl, namespace: str, cluster: LabCluster
) -> None:
    manifest = {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "RepositoryPlacement",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"repository": "Not/A/Name", "machine": "host-a"},
    }
    bad = kubectl("apply", "-f", "-", check=False, input=json.dumps(manifest))
    assert bad.returncode != 0 and "spec.repository" in bad.stderr
    create_pulse(kubectl, namespace, "immutable", "host-a", interval=1, port=8084)
    renamed = kubectl(
        "patch",
        "-n",
        namespace,
        "rp/immutable",
        "--type",
        "merge",
        "-p",
        '{"spec":{"repository":"other"}}',
        check=False,
    )
    assert renamed.returncode != 0 and "spec.repository is immutable" in renamed.stderr


@pytest.mark.faults
def test_changing_the_machine_back_during_the_bulk_sync_cancels_the_move(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str
) -> None:
    """Changed one's mind while the image is still being copied: spec.machine back to
    where it runs cancels the move before its commit point; pulse never stopped."""
    name = "pulse-redirect"
    create_pulse(
        kubectl,
        namespace,
        name,
        "host-a",
        port=8083,
        interval=BEAT,
        transfer={"bandwidthLimit": "20M"},
    )
    wait_current(kubectl, namespace, name)
    fill(lab, "a", name, 60)
    move(kubectl, namespace, name, "host-b")
    until(
        "the migration to start",
        lambda: placement(kubectl, namespace, name)["status"].get("migration"),
        30,
    )
    move(kubectl, namespace, name, "host-a")  # changed mind while it moves
    obj = wait_current(kubectl, namespace, name, timeout=300)
    last = obj["status"]["lastMigration"]
    assert (last["from"], last["to"], last["result"]) == ("host-a", "host-b", "Cancelled")
    assert last["reason"].startswith(("cancelled in Pending", "cancelled in Preparing",
                                      "cancelled in BulkSync"))  # fmt: skip
    assert obj["status"]["currentMachine"] == "host-a"
    heard = beats(lab, "a", name)
    counters = [c for _, c in heard]
    assert counters == list(range(1, counters[-1] + 1))
    longest = max((b - a).total_seconds() for (a, _), (b, _) in itertools.pairwise(heard))
    assert longest < 1, f"pulse was silent {longest:.2f}s: it was stopped"


@pytest.mark.faults
def test_a_second_replica_stands_by_and_never_drives_the_same_migration(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str
) -> None:
    first = cluster.operator
    assert first is not None
    # The lowest priority: it must stand by while the first replica lives.
    second = OperatorProcess(
        first.kubeconfig,
        first.tls_dir,
        first.log_path.with_name("operator-2.log"),
        first.namespaces,
        extra_env={"BERTH_PEERING_PRIORITY": "0"},
    )
    second.start()
    try:
        # kopf starts paused and resumes only if no live peer outranks it.
        until(
            "the second replica to log in",
            lambda: "Initial authentication has finished" in second.log_path.read_text(),
            30,
            0.2,
        )
        name = "pulse-ha"
        create_pulse(kubectl, namespace, name, "host-a", interval=BEAT, port=8085)
        wait_current(kubectl, namespace, name)
        move(kubectl, namespace, name, "host-b")
        obj = wait_current(kubectl, namespace, name)
        assert obj["status"]["currentMachine"] == "host-b"
        assert f"{namespace}/{name}" in first.log_path.read_text()
        standby = second.log_path.read_text()
        assert f"{namespace}/{name}" not in standby, "the standby replica reconciled it"
        assert "Resuming operations" not in standby, "the standby replica took over"
    finally:
        second.stop()


def test_operator_metrics_count_migrations_and_downtime(cluster: LabCluster) -> None:
    """Runs last in this module: the migrations above must show in the metrics."""
    assert cluster.operator is not None
    port = cluster.operator.metrics_port
    text = until("operator metrics", lambda: _metrics(port), 30)
    assert 'berth_migrations_total{mode="live",result="Succeeded"}' in text
    assert "berth_migration_downtime_seconds_count" in text
    assert 'berth_migration_bytes_total{kind="delta"}' in text


def _metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body: str = resp.read().decode()
            return body
    except OSError:
        return None
