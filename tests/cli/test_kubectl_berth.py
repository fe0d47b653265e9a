"""kubectl berth against the real API server, operator and lab hosts."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from berth_lab import Lab
from berth_lab.cluster import LabCluster
from berth_lab.kubeconfig import Kubectl
from e2e.helpers import beats, create_pulse, kubectl_berth, placement, until
from kubectl_berth.client import Berth, CLIError

pytestmark = pytest.mark.cli


berth = kubectl_berth


@pytest.fixture(scope="module")
def pulse_on_a(cluster: LabCluster, kubectl: Kubectl, namespace: str) -> str:
    name = "cli-pulse"
    create_pulse(kubectl, namespace, name, "host-a", interval=0.2, port=8090)
    until(
        "cli-pulse Ready",
        lambda: (
            placement(kubectl, namespace, name).get("status", {}).get("currentMachine") == "host-a"
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in placement(kubectl, namespace, name)["status"]["conditions"]
            )
        ),
        120,
    )
    return name


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["migrate", "nope", "--to", "host-b"], "placement 'nope' not found"),
        (["migrate", "cli-pulse", "--to", "host-z"], "machine 'host-z' does not exist"),
        (["migrate", "cli-pulse", "--to", "host-a"], "already runs on host-a"),
        (["status", "nope"], "not found"),
        (["cordon", "host-z"], "does not exist"),
        (["migrate", "cli-pulse", "--to", "host-b", "--skip-dns"], "has no spec.dns"),
    ],
)
def test_bad_input_is_refused_before_anything_changes(
    kubectl: Kubectl, namespace: str, pulse_on_a: str, args: list[str], words: str
) -> None:
    before = placement(kubectl, namespace, pulse_on_a)["metadata"]["generation"]
    result = berth(kubectl, "-n", namespace, *args)
    assert result.returncode == 1 and words in result.stderr, result.stderr
    assert placement(kubectl, namespace, pulse_on_a)["metadata"]["generation"] == before


def test_a_cordoned_target_is_refused(kubectl: Kubectl, namespace: str, pulse_on_a: str) -> None:
    assert berth(kubectl, "cordon", "host-b").returncode == 0
    try:
        machines = json.loads(berth(kubectl, "machines", "-o", "json").stdout)
        assert {m["metadata"]["name"]: m["spec"]["cordoned"] for m in machines}["host-b"]
        refused = berth(kubectl, "-n", namespace, "migrate", pulse_on_a, "--to", "host-b")
        assert refused.returncode == 1 and "cordoned" in refused.stderr
    finally:
        assert berth(kubectl, "uncordon", "host-b").returncode == 0


def test_migrate_wait_shows_phases_progress_and_downtime(
    lab: Lab, kubectl: Kubectl, namespace: str, pulse_on_a: str
) -> None:
    result = berth(kubectl, "-n", namespace, "migrate", pulse_on_a, "--to", "host-b", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for words in (
        "spec.machine host-a -> host-b",
        "phase BulkSync",
        "phase Cutover",
        "phase Verifying",
        "cutover: DOWNTIME",
        "moved to host-b",
    ):
        assert words in out, out
    counters = [c for _, c in beats(lab, "b", pulse_on_a)]
    assert counters == list(range(1, counters[-1] + 1))

    listed = json.loads(berth(kubectl, "-n", namespace, "list", "-o", "json").stdout)
    mine = next(p for p in listed if p["metadata"]["name"] == pulse_on_a)
    assert mine["status"]["currentMachine"] == "host-b"
    table = berth(kubectl, "-n", namespace, "list").stdout
    assert "NAME" in table and pulse_on_a in table
    history = yaml.safe_load(
        berth(kubectl, "-n", namespace, "history", pulse_on_a, "-o", "yaml").stdout
    )
    assert history[0]["to"] == "host-b" and history[0]["result"] == "Succeeded"
    status = berth(kubectl, "-n", namespace, "status", pulse_on_a).stdout
    assert "current machine  host-b" in status and "Ready" in status
    # status.endpoints: where pulse answers now, at host-b's address and its published port
    b = lab.host("b").address
    assert f"endpoint         pulse {b}:8090/tcp (host-b)" in status, status


def test_repos_shows_where_a_repository_runs_and_what_it_left_behind(
    kubectl: Kubectl, namespace: str, pulse_on_a: str
) -> None:
    here = placement(kubectl, namespace, pulse_on_a)["status"]["currentMachine"]
    there = "host-b" if here == "host-a" else "host-a"
    moved = berth(kubectl, "-n", namespace, "migrate", pulse_on_a, "--to", there, "--wait")
    assert moved.returncode == 0, moved.stdout + moved.stderr

    def entries() -> dict[str, dict[str, Any]]:
        listed = json.loads(berth(kubectl, "repos", "-o", "json").stdout)
        return {e["machine"]: e for e in listed if e["name"] == pulse_on_a}

    def reported() -> dict[str, dict[str, Any]] | None:
        found = entries()  # the heartbeats write what changed at their next beat
        done = here in found and found[here].get("movedTo") == there and there in found
        # The target's copy counts as the source's until its `up` has finished.
        live = done and found[there]["dockerRunning"] and not found[there].get("movedTo")
        return found if live else None

    found = until("both machines' heartbeats to report the move", reported, 60, 0.5)
    target, source = found[there], found[here]
    owner = [f"{namespace}/{pulse_on_a}"]
    assert target["mounted"] and target["dockerRunning"] and not target["baseRetained"], target
    assert [(c["name"], c["state"], c["checkpoint"]) for c in target["containers"]] == [
        ("pulse", "running", True)
    ], target
    assert target["placements"] == owner and target["usedBytes"] > 0
    assert not source["mounted"] and not source["dockerRunning"], source
    assert source["baseRetained"] and source["placements"] == owner, source
    assert all(c["state"] != "running" for c in source["containers"]), source

    table = berth(kubectl, "repos", "--machine", here).stdout
    assert "REPOSITORY" in table and f"kept (moved to {there})" in table, table
    assert all(line.startswith(here) for line in table.splitlines()[1:]), table
    unknown = berth(kubectl, "repos", "--machine", "host-nowhere")
    assert unknown.returncode != 0 and "host-nowhere" in unknown.stderr, unknown


def test_migrate_from_moves_it_only_from_where_it_runs(
    kubectl: Kubectl, namespace: str, pulse_on_a: str
) -> None:
    here = placement(kubectl, namespace, pulse_on_a)["status"]["currentMachine"]
    there = "host-b" if here == "host-a" else "host-a"
    before = placement(kubectl, namespace, pulse_on_a)["metadata"]["resourceVersion"]
    wrong = berth(kubectl, "-n", namespace, "migrate", pulse_on_a, "--to", here, "--from", there)
    assert wrong.returncode != 0, wrong.stdout
    assert f"{pulse_on_a} runs on {here}, not on {there}: not moved" in wrong.stderr, wrong
    assert placement(kubectl, namespace, pulse_on_a)["metadata"]["resourceVersion"] == before
    both = berth(kubectl, "-n", namespace, "migrate", pulse_on_a, "--to", there,
                 "--checkpoint", "--no-checkpoint")  # fmt: skip
    assert both.returncode == 2 and "not allowed with" in both.stderr, both

    # A write that carries a version read before someone else's change is refused.
    stale = Berth(str(kubectl.kubeconfig), None)
    kubectl("annotate", "-n", namespace, f"rp/{pulse_on_a}", "berth.test/touched=yes")
    with pytest.raises(CLIError, match="changed since it was read"):
        stale.patch_placement(namespace, pulse_on_a, {"machine": there}, resource_version=before)
    assert placement(kubectl, namespace, pulse_on_a)["spec"]["machine"] == here

    moved = berth(kubectl, "-n", namespace, "migrate", pulse_on_a, "--to", there,
                  "--from", here, "--checkpoint", "--wait")  # fmt: skip
    assert moved.returncode == 0, moved.stdout + moved.stderr
    done = placement(kubectl, namespace, pulse_on_a)
    assert done["status"]["currentMachine"] == there and done["spec"]["checkpoint"] is True


def test_drain_moves_everything_off_a_machine(
    lab: Lab, kubectl: Kubectl, namespace: str, pulse_on_a: str
) -> None:
    result = berth(kubectl, "drain", "host-b", "--wait")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "machine host-b cordoned" in result.stdout
        for p in json.loads(berth(kubectl, "list", "-A", "-o", "json").stdout):
            assert p["status"].get("currentMachine") != "host-b", p["metadata"]["name"]
    finally:
        berth(kubectl, "uncordon", "host-b")
