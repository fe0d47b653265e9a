"""A move the GitOps way on the real lab: a manifest file, server-side applied by
"kustomize-controller" as Flux does, edited and applied again; Argo CD's health check
and kstatus watched on the live object throughout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from berth_api.v1alpha1 import RepositoryPlacement
from berth_lab import Lab
from berth_lab.cluster import LabCluster
from berth_lab.kubeconfig import Kubectl
from e2e.helpers import beats, condition, placement, until

if TYPE_CHECKING:
    from ship.conftest import GitopsCheck

# Also marked e2e/apiserver test by test: they need root and the lab, or an API server.
pytestmark = pytest.mark.ship

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "gitops" / "example" / "pulse-placement.yaml"
HEALTH_LUA = REPO_ROOT / "gitops" / "argocd" / "berth.dev" / "RepositoryPlacement" / "health.lua"
ARGOCD_CM = REPO_ROOT / "gitops" / "argocd" / "argocd-cm.yaml"
FIELD_MANAGER = "kustomize-controller"  # Flux's kustomize-controller applies as this
NAME = "pulse-gitops"
PORT = 8093  # a host port of its own on the lab hosts
SAME_VERDICT = {"Healthy": "Current", "Progressing": "InProgress", "Degraded": "Failed"}


def example_manifest(namespace: str) -> str:
    """gitops/example/pulse-placement.yaml, renamed into the test's namespace, as a
    repository's file would read after kustomize set the namespace."""
    obj: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    obj["metadata"] = {"name": NAME, "namespace": namespace}
    spec = obj["spec"]
    assert spec["machine"] == "host-a"
    spec["repository"] = NAME
    (service,) = spec["template"]["services"]
    service["environment"]["PULSE_INTERVAL"] = "0.2"
    service["ports"][0]["host"] = PORT
    return yaml.safe_dump(obj, sort_keys=False)


def server_side_apply(kubectl: Kubectl, path: Path) -> None:
    kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", str(path))


def live(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = kubectl.json(
        "get", "-n", namespace, f"rp/{NAME}", "--show-managed-fields"
    )
    return obj


def verdicts(gitops_check: GitopsCheck, obj: dict[str, Any]) -> tuple[dict[str, str], str]:
    """(Argo CD's health, kstatus' status) of one snapshot of the object."""
    argo = gitops_check.argo_health(HEALTH_LUA, obj)
    kstatus = gitops_check.kstatus(obj)["status"]
    # Both tools judge the same snapshot alike, at every instant of a move.
    assert SAME_VERDICT[argo["status"]] == kstatus, (argo, kstatus, obj.get("status"))
    return argo, kstatus


def settled(kubectl: Kubectl, namespace: str, machine: str) -> dict[str, Any] | None:
    obj = live(kubectl, namespace)
    status = obj.get("status", {})
    if (
        status.get("observedGeneration") == obj["metadata"]["generation"]
        and condition(obj, "Ready").get("status") == "True"
        and status.get("currentMachine") == machine
    ):
        return obj
    return None


def test_example_placement_is_a_valid_placement() -> None:
    placement_ = RepositoryPlacement.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    assert placement_.spec.machine == "host-a" and placement_.spec.template is not None
    assert [s.checkpoint for s in placement_.spec.template.services] == [True]


@pytest.mark.apiserver
def test_argocd_cm_merges_into_an_existing_argocd_cm(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    """docs/gitops.md's install command: the health check joins an existing argocd-cm,
    and stays there when Argo CD's install is applied again (an upgrade)."""
    cm: dict[str, Any] = yaml.safe_load(ARGOCD_CM.read_text())
    cm["metadata"]["namespace"] = namespace
    (key,) = cm["data"]
    installed: dict[str, Any] = {  # as an Argo CD install leaves it (client-side apply)
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "namespace": namespace,
            "labels": cm["metadata"]["labels"],
        },
        "data": {"url": "https://argocd.example.com", "admin.enabled": "false"},
    }
    kubectl.apply(installed)
    path = tmp_path / "argocd-cm.yaml"
    path.write_text(yaml.safe_dump(cm))
    try:
        kubectl(
            "patch", "-n", namespace, "configmap/argocd-cm", "--type=merge", f"--patch-file={path}"
        )
        data = kubectl.json("get", "-n", namespace, "configmap/argocd-cm")["data"]
        assert data == {**installed["data"], key: HEALTH_LUA.read_text()}
        kubectl.apply(installed)
        data = kubectl.json("get", "-n", namespace, "configmap/argocd-cm")["data"]
        assert data == {**installed["data"], key: HEALTH_LUA.read_text()}
    finally:
        kubectl("delete", "-n", namespace, "configmap/argocd-cm", check=False)


@pytest.mark.e2e
def test_a_commit_that_changes_spec_machine_moves_the_repository(
    cluster: LabCluster,
    lab: Lab,
    kubectl: Kubectl,
    namespace: str,
    gitops_check: GitopsCheck,
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "pulse-placement.yaml"
    manifest.write_text(example_manifest(namespace))

    # What a client sees before the operator writes anything: never Healthy/Current.
    dry = kubectl.json(
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "--dry-run=server",
        "-f",
        str(manifest),
    )
    assert dry["status"] == {"observedGeneration": -1}
    argo, kstatus = verdicts(gitops_check, dry)
    assert argo["status"] == "Progressing" and kstatus == "InProgress"

    # Sync 1: the placement on host-a.
    server_side_apply(kubectl, manifest)
    on_a = until("Ready on host-a", lambda: settled(kubectl, namespace, "host-a"), 180, 0.2)
    argo, kstatus = verdicts(gitops_check, on_a)
    assert argo == {"status": "Healthy", "message": "Running on host-a"}
    assert kstatus == "Current"
    until("pulse to beat on host-a", lambda: len(beats(lab, "a", NAME)) >= 5, 30)
    counted_on_a = beats(lab, "a", NAME)[-1][1]

    # Sync 2: the commit that moves it. The file changes in one place only.
    text = manifest.read_text()
    assert text.count("machine: host-a") == 1
    manifest.write_text(text.replace("machine: host-a", "machine: host-b"))
    server_side_apply(kubectl, manifest)
    seen: list[tuple[int, int, str, str, str, str | None]] = []
    deadline = time.monotonic() + 240
    final: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        obj = live(kubectl, namespace)
        argo, kstatus = verdicts(gitops_check, obj)
        status = obj.get("status", {})
        snapshot = (
            obj["metadata"]["generation"],
            status.get("observedGeneration", -1),
            argo["status"],
            kstatus,
            argo["message"],
            status.get("currentMachine"),
        )
        if not seen or seen[-1] != snapshot:
            seen.append(snapshot)
        if settled(kubectl, namespace, "host-b") is not None:
            final = live(kubectl, namespace)
            break
        time.sleep(0.1)
    if final is not None:
        argo, kstatus = verdicts(gitops_check, final)
        seen.append((2, 2, argo["status"], kstatus, argo["message"], "host-b"))
    trail = "\n".join(map(str, seen))
    assert final is not None, f"not settled on host-b in time; verdicts seen:\n{trail}"
    print(f"\n[gitops] verdicts during the move:\n{trail}")

    # Progressing/InProgress while it moved, never Healthy before it ran on host-b.
    assert any(s[2] == "Progressing" and s[3] == "InProgress" for s in seen), trail
    assert not any(s[2] == "Healthy" and s[5] != "host-b" for s in seen), trail
    assert any(s[4].startswith("Migrating host-a -> host-b: ") for s in seen), trail

    status = final["status"]
    assert final["metadata"]["generation"] == 2
    assert status["currentMachine"] == "host-b"
    last = status["lastMigration"]
    assert last["result"] == "Succeeded" and (last["from"], last["to"]) == ("host-a", "host-b")
    argo, kstatus = verdicts(gitops_check, final)
    assert argo == {"status": "Healthy", "message": "Running on host-b"}
    assert kstatus == "Current"

    # One unbroken count (the container's log moved with the repository): the process's
    # memory moved, so the counter went on past what it had reached on host-a.
    until("pulse to beat on host-b", lambda: len(beats(lab, "b", NAME)) > 0, 30)
    counters = [c for _, c in beats(lab, "b", NAME)]
    assert counters == list(range(1, counters[-1] + 1)), "the counter was reset"
    assert counters[-1] > counted_on_a
    with lab.agent("a") as a:
        assert not a.status(NAME).docker.running

    # The operator never wrote spec: only the applier manages spec fields, so a GitOps
    # tool never sees drift. The operator writes status (status subresource). This
    # placement keeps its data when deleted and has no DNS records, so its deletion has
    # no work: kopf puts neither a finalizer nor a bookkeeping annotation on it
    # (docs/gitops.md); what kopf does write stays under berth.dev/.
    meta = final["metadata"]
    for managed in meta["managedFields"]:
        fields = set(managed["fieldsV1"])
        if managed["manager"] == FIELD_MANAGER:
            assert fields == {"f:spec"}, managed
        elif "f:status" in fields:
            assert fields == {"f:status"} and managed["subresource"] == "status", managed
        else:
            assert fields == {"f:metadata"}, managed
    annotations = meta.get("annotations", {})
    assert all(key.startswith("berth.dev/") for key in annotations), meta
    assert not meta.get("finalizers"), meta
    print(f"[gitops] annotations written by kopf: {sorted(annotations)}")

    # Sync 3: the unchanged file again (Flux's next interval, an Argo CD resync) is a no-op:
    # not even a write.
    before = placement(kubectl, namespace, NAME)
    server_side_apply(kubectl, manifest)
    time.sleep(3)  # time enough for the operator to start a migration, were there one
    again = placement(kubectl, namespace, NAME)
    assert again["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert again["metadata"]["generation"] == 2
    assert again["status"]["observedGeneration"] == 2
    assert not again["status"].get("migration")
    assert again["status"]["lastMigration"]["id"] == last["id"]
    assert len(again["status"]["history"]) == len(status["history"]) == 1
    assert verdicts(gitops_check, again)[0]["status"] == "Healthy"
