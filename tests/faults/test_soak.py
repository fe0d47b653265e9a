"""The soak: many moves back and forth of pulse and of the ledger writer, with faults
injected at random points, ending with nothing lost and nothing left behind.

    BERTH_SOAK_MOVES=200 BERTH_SOAK_SEED=20261202 .venv/bin/pytest -s tests/faults/test_soak.py

It takes about 10 s a move, so it runs only when BERTH_SOAK_MOVES is set (the test
command's other fault tests inject each of these faults once, deliberately). The seed is
printed; the same seed injects the same faults at the same moves. After every move: the
repository runs on exactly one machine, pulse's counter never restarted, every record
ledger acknowledged is in its file; at the end, the leftovers check of every fault test.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from berth_common.crash import EXIT_CODE
from berth_lab import Lab, manifests
from berth_lab.cluster import LabCluster
from berth_lab.kubeconfig import Kubectl
from berth_lab.workloads import ledger_acks, pulse_and_ledger
from e2e.helpers import condition, move, placement, until
from faults.workload import assert_intact, leftovers

pytestmark = pytest.mark.faults
MOVES = int(os.environ.get("BERTH_SOAK_MOVES", "0"))
SEED = int(os.environ.get("BERTH_SOAK_SEED", "0")) or random.SystemRandom().randrange(10**8)
# Two repositories of pulse beside ledger, moved in turn (ports apart: both may run on
# one machine).
APPS = {"soak-a": 8101, "soak-b": 8102}
OPERATOR_POINTS = [
    "Preparing", "BulkSync", "Cutover", "Cutover.frozen", "Verifying", "Verifying.answered",
    "Finalizing", "Preparing.stepped", "BulkSync.stepped", "Cutover.stepped",
    "Finalizing.stepped",
]  # fmt: skip
SOURCE_AGENT_POINTS = ["push.sending", "freeze.frozen"]
TARGET_AGENT_POINTS = ["up.restoring", "up.restored"]


@dataclass(frozen=True)
class Fault:
    kind: str  # none | operator | agent | operator-kill
    point: str = ""

    def __str__(self) -> str:
        return self.kind + (f" at {self.point}" if self.point else "")


def pick(rng: random.Random) -> Fault:
    """Half the moves run clean; the rest meet one fault each."""
    roll = rng.random()
    if roll < 0.5:
        return Fault("none")
    if roll < 0.75:
        return Fault("operator", rng.choice(OPERATOR_POINTS))
    if roll < 0.9:
        return Fault("agent", rng.choice(SOURCE_AGENT_POINTS + TARGET_AGENT_POINTS))
    return Fault("operator-kill", f"{rng.uniform(0, 3):.2f}s")


@pytest.fixture(scope="module")
def apps(cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str) -> Iterator[list[str]]:
    for name, port in APPS.items():
        kubectl.apply(manifests.placement(name, namespace, "host-a", pulse_and_ledger(port)))
    for name in APPS:
        until(
            f"{name} Ready", functools.partial(settled, kubectl, namespace, name, "host-a"), 180, 1
        )
        until(f"{name}'s ledger", functools.partial(ledger_acks, lab, "host-a", name), 60, 1)
    yield list(APPS)
    for name in APPS:
        kubectl("delete", "-n", namespace, f"rp/{name}", "--wait=false")


def settled(kubectl: Kubectl, namespace: str, name: str, machine: str) -> dict[str, Any] | None:
    obj = placement(kubectl, namespace, name)
    status = obj.get("status") or {}
    ready = condition(obj, "Ready").get("status") == "True"
    current = status.get("observedGeneration") == obj["metadata"]["generation"]
    return status if ready and current and status.get("currentMachine") == machine else None


def moment(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def inject(fault: Fault, cluster: LabCluster, lab: Lab, source: str, target: str) -> None:
    """Arm the fault before the move; undone (and the victim restarted) by recover."""
    operator = cluster.operator
    assert operator is not None
    if fault.kind == "operator":
        operator.crash_at(fault.point)
    elif fault.kind == "agent":
        victim = source if fault.point in SOURCE_AGENT_POINTS else target
        lab.host(victim).crash_agent_at(fault.point)


def recover(fault: Fault, cluster: LabCluster, lab: Lab, source: str, target: str) -> str:
    """Wait for the armed fault to fire, bring the victim back; what happened."""
    operator = cluster.operator
    assert operator is not None
    if fault.kind == "operator-kill":
        time.sleep(float(fault.point.rstrip("s")))
        operator.kill()
        operator.start()
        return "operator killed"
    if fault.kind == "operator":
        try:
            code = operator.wait_exit(timeout=30)
            fired = "fired" if code == EXIT_CODE else f"exited {code}"
        except Exception:  # a point the move never reached (a clean one never fails)
            fired = "not reached"
        finally:
            operator.crash_file.unlink(missing_ok=True)
        if operator.proc is None:
            operator.start()
        return fired
    if fault.kind == "agent":
        victim = source if fault.point in SOURCE_AGENT_POINTS else target
        host = lab.host(victim)
        try:
            lab.wait_agent_exit(victim, timeout=30)
            fired = "fired"
        except Exception:
            fired = "not reached"
        finally:
            (host.plan.datastore_mount / "crash-at").unlink(missing_ok=True)
        if host.agent_pid is None:
            time.sleep(1)  # the operator meets a dead agent for a while
            lab.start_agent(host)
        return fired
    return "-"


@pytest.mark.skipif(MOVES == 0, reason="a soak of ~10 s a move: set BERTH_SOAK_MOVES")
@pytest.mark.timeout(300 + 60 * MOVES)  # not the suite's 15 minutes: a move's worst case
def test_soak(
    cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str, apps: list[str]
) -> None:
    rng = random.Random(SEED)
    print(f"\n[soak] seed {SEED}: {MOVES} moves of {', '.join(apps)}")
    began = time.monotonic()
    counts: collections.Counter[str] = collections.Counter()
    results: collections.Counter[str] = collections.Counter()
    downtimes: list[float] = []
    for number in range(1, MOVES + 1):
        name = apps[number % len(apps)]
        source = placement(kubectl, namespace, name)["status"]["currentMachine"]
        target = "host-b" if source == "host-a" else "host-a"
        acked = max(ledger_acks(lab, source, name))
        fault = pick(rng)
        counts[fault.kind] += 1
        started, asked_at = time.monotonic(), dt.datetime.now(dt.UTC)
        inject(fault, cluster, lab, source, target)
        move(kubectl, namespace, name, target)
        outcome = recover(fault, cluster, lab, source, target)
        status = until(
            f"move {number} of {name} to settle on {target}",
            functools.partial(settled, kubectl, namespace, name, target),
            600,
            0.5,
        )
        intact = assert_intact(lab, name, acked)
        last = status["lastMigration"]
        attempts = [h for h in status["history"] if moment(h["startedAt"]) >= asked_at]
        results[last["result"]] += 1
        results["retried"] += len(attempts) - 1
        if last.get("downtimeSeconds") is not None:
            downtimes.append(last["downtimeSeconds"])
        print(
            f"[soak] {number:3d} {name} {source}->{target} {fault} ({outcome}): "
            f"{last['result']} downtime {last.get('downtimeSeconds')}s, counter "
            f"{intact.counter}, {intact.records} records, {time.monotonic() - started:.1f}s",
            flush=True,
        )
        if number % 25 == 0:
            print(f"[soak] after {number}: {dict(counts)}, {dict(results)}", flush=True)
    left = leftovers(lab)
    assert left == [], left
    downtimes.sort()
    median = downtimes[len(downtimes) // 2] if downtimes else None
    print(
        f"[soak] seed {SEED}: {MOVES} moves ({', '.join(f'{k} {v}' for k, v in counts.items())}"
        f"); {results['Succeeded']} Succeeded, {results['retried']} attempts rolled back or "
        f"failed and retried; median downtime {median}s; pulse's counters unbroken, no "
        f"acknowledged record lost, nothing left behind; {(time.monotonic() - began) / 60:.0f} "
        "min"
    )
