"""Flux for real: its source-controller pulls a git repository from the lab's git server,
its kustomize-controller applies gitops/example's placement to the lab's API server, and
a commit that changes `machine:` moves pulse. The Kustomization (wait: true) turns Ready
only once the move has finished, and reports the failure of a move to a machine that
does not exist."""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from berth_lab import Lab
from berth_lab.cluster import LabCluster
from berth_lab.flux_service import LabFlux
from berth_lab.kubeconfig import Kubectl
from e2e.helpers import beats, condition, placement, until

pytestmark = [pytest.mark.gitops, pytest.mark.e2e]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "gitops" / "example"
NAME = "pulse-flux"
PORT = 8094  # a host port of its own on the lab hosts


def placement_file(machine: str) -> str:
    """gitops/example/pulse-placement.yaml with its own name, port and `machine:`."""
    obj: dict[str, Any] = yaml.safe_load((EXAMPLE / "pulse-placement.yaml").read_text())
    obj["metadata"]["name"] = NAME
    obj["spec"].update(machine=machine, repository=NAME)
    (service,) = obj["spec"]["template"]["services"]
    service["environment"]["PULSE_INTERVAL"] = "0.2"
    service["ports"][0]["host"] = PORT
    return yaml.safe_dump(obj, sort_keys=False)


def flux_objects(namespace: str, url: str) -> list[dict[str, Any]]:
    """gitops/flux's two objects, pointed at the lab's git server, polling each 2 s."""
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "placements", "namespace": namespace},
            "spec": {"interval": "2s", "url": url, "ref": {"branch": "main"}, "timeout": "20s"},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "placements", "namespace": namespace},
            "spec": {
                "interval": "1m",
                "retryInterval": "2s",
                "sourceRef": {"kind": "GitRepository", "name": "placements"},
                "path": "./",
                "targetNamespace": namespace,
                "prune": False,
                "wait": True,
                "timeout": "3m",
            },
        },
    ]


@pytest.fixture(scope="module")
def flux(lab: Lab, kubectl: Kubectl, cluster: LabCluster) -> Iterator[LabFlux]:
    # Flux's controllers are built for these tests alone, the first time (about 15 min).
    print("\n[gitops] hack/kube/build.sh --with-flux (cached after the first time)")
    subprocess.run(["bash", str(REPO_ROOT / "hack/kube/build.sh"), "--with-flux"], check=True)
    with LabFlux(lab.plan.gitops_dir, kubectl, lab.plan.owner_env()) as running:
        yield running


def kustomization(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = kubectl.json("get", "-n", namespace, "kustomization/placements")
    return obj


def applied(obj: dict[str, Any], commit: str) -> bool:
    return commit in (obj.get("status") or {}).get("lastAttemptedRevision", "")


def ready(obj: dict[str, Any]) -> str:
    found = condition(obj, "Ready")
    return f"{found.get('status', '-')} {found.get('reason', '')}"


def test_a_commit_that_changes_machine_moves_pulse_and_flux_waits_for_the_move(
    flux: LabFlux, lab: Lab, kubectl: Kubectl, namespace: str
) -> None:
    def ready_at(commit: str, status: str) -> Callable[[], dict[str, Any] | None]:
        """A check for until(): the Kustomization, once it has applied commit and its
        Ready condition is status."""

        def check() -> dict[str, Any] | None:
            k = kustomization(kubectl, namespace)
            return (
                k if applied(k, commit) and condition(k, "Ready").get("status") == status else None
            )

        return check

    repo = flux.repository(namespace)
    first = repo.commit(
        {
            "kustomization.yaml": (EXAMPLE / "kustomization.yaml").read_text(),
            "pulse-placement.yaml": placement_file("host-a"),
        },
        "pulse on host-a",
    )
    kubectl.apply(flux_objects(namespace, repo.url))
    print(f"\n[gitops] commit {first[:12]}: pulse on host-a ({repo.url})")
    until(
        "Flux to apply the first commit and find pulse Current", ready_at(first, "True"), 240, 0.5
    )
    assert placement(kubectl, namespace, NAME)["status"]["currentMachine"] == "host-a"
    before = [c for _, c in beats(lab, "host-a", NAME)]

    # The move: a commit, nothing else.
    second = repo.commit({"pulse-placement.yaml": placement_file("host-b")}, "pulse to host-b")
    print(f"[gitops] commit {second[:12]}: machine: host-a -> host-b")
    started = time.monotonic()
    timeline: list[str] = []
    seen_during_move: list[str] = []

    def watch() -> dict[str, Any] | None:
        k = kustomization(kubectl, namespace)
        p = placement(kubectl, namespace, NAME)
        status = p.get("status") or {}
        phase = (status.get("migration") or {}).get("phase") or "-"
        line = (
            f"Ready={ready(k):<28} applied={'yes' if applied(k, second) else 'no ':<3} "
            f"pulse: {status.get('currentMachine')} migration {phase}"
        )
        if not timeline or timeline[-1].split("] ", 1)[1] != line:
            timeline.append(f"[{time.monotonic() - started:6.1f}s] {line}")
        if applied(k, second) and phase != "-":
            seen_during_move.append(ready(k))
        done = applied(k, second) and condition(k, "Ready").get("status") == "True"
        return p if done else None

    settled = until("Flux to apply the second commit and wait for the move", watch, 300, 0.3)
    print("[gitops] the Kustomization and pulse over time:")
    print("\n".join(f"  {line}" for line in timeline))
    last = settled["status"]["lastMigration"]
    # Ready=True came only after the move had ended, on host-b.
    assert settled["status"]["currentMachine"] == "host-b", settled["status"]
    assert not settled["status"].get("migration"), settled["status"]
    assert last["result"] == "Succeeded" and last["to"] == "host-b", last
    assert seen_during_move and not any(r.startswith("True") for r in seen_during_move), (
        seen_during_move
    )
    # pulse's counter lives only in memory: it went on across the move, never reset.
    after = [c for _, c in beats(lab, "host-b", NAME)]  # its log travelled with it
    assert after[-1] > before[-1] and all(b == a + 1 for a, b in itertools.pairwise(after))
    print(
        f"[gitops] moved by commit {second[:12]}: downtime {last['downtimeSeconds']}s, "
        f"pulse {before[-1]} on host-a -> {after[-1]} on host-b"
    )

    # A commit that sends it to a machine that does not exist: Flux reports the failure.
    third = repo.commit({"pulse-placement.yaml": placement_file("host-nowhere")}, "pulse nowhere")
    print(f"[gitops] commit {third[:12]}: machine: host-b -> host-nowhere")
    failed = until("the Kustomization to report the failure", ready_at(third, "False"), 240, 0.5)
    message = condition(failed, "Ready")["message"]
    print(f"[gitops] Ready=False {condition(failed, 'Ready')['reason']}: {message[:300]}")
    assert condition(failed, "Ready")["reason"] == "HealthCheckFailed", condition(failed, "Ready")
    assert f"RepositoryPlacement/{namespace}/{NAME}" in message, message
    stalled = condition(placement(kubectl, namespace, NAME), "Stalled")
    assert stalled.get("reason") == "UnknownMachine", stalled
    assert placement(kubectl, namespace, NAME)["status"]["currentMachine"] == "host-b"

    # Back to a good commit: Ready again; then Flux lets go (prune: false keeps pulse).
    fourth = repo.commit({"pulse-placement.yaml": placement_file("host-b")}, "pulse on host-b")
    until("the Kustomization Ready again", ready_at(fourth, "True"), 240, 0.5)
    kubectl("delete", "-n", namespace, "kustomization/placements", "gitrepository/placements")
