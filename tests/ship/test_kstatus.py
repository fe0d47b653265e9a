"""kstatus (Flux's `wait`, healthChecks) on the Argo CD testdata: the same verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from berth_api import crdgen

if TYPE_CHECKING:
    from ship.conftest import GitopsCheck

pytestmark = pytest.mark.ship

REPO_ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATION = REPO_ROOT / "gitops" / "argocd" / "berth.dev" / "RepositoryPlacement"
HEALTH_LUA = CUSTOMIZATION / "health.lua"
FLUX = REPO_ROOT / "gitops" / "flux"

# Argo CD health -> kstatus status for the same object.
SAME_VERDICT = {"Healthy": "Current", "Progressing": "InProgress", "Degraded": "Failed"}
# Where the two cannot agree, and why that is harmless:
EXCEPTIONS = {
    # kstatus has nothing to go on without status: it calls an object without
    # observedGeneration or conditions Current. The API server never returns one: the
    # CRD defaults status to {observedGeneration: -1} (test below), which is InProgress.
    "no-status": ("Current", "Resource is current"),
    # kstatus says Terminating; Argo CD says Progressing "Pending deletion" for any
    # object being deleted, before any health check runs.
    "deleting": ("Terminating", "Resource scheduled for deletion"),
}

CASES: list[dict[str, Any]] = yaml.safe_load((CUSTOMIZATION / "health_test.yaml").read_text())[
    "tests"
]


def load(path: Path) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(path.read_text())
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_]
    return found[0] if found else {}


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_kstatus_agrees_with_the_argo_health_check(
    gitops_check: GitopsCheck, case: dict[str, Any]
) -> None:
    path = CUSTOMIZATION / case["inputPath"]
    obj = load(path)
    argo = case["healthStatus"]
    got = gitops_check.kstatus(path)
    if path.stem in EXCEPTIONS:
        status, message = EXCEPTIONS[path.stem]
        assert got == {"status": status, "message": message}
        return
    assert got["status"] == SAME_VERDICT[argo["status"]], (argo, got)
    generation = obj["metadata"]["generation"]
    observed = obj["status"]["observedGeneration"]
    if observed != generation:
        assert got["message"] == (
            f"RepositoryPlacement generation is {generation}, "
            f"but latest observed generation is {observed}"
        )
    elif got["status"] == "Failed":
        # Both tools show the Stalled condition's message.
        assert got["message"] == argo["message"] == condition(obj, "Stalled")["message"]
    elif got["status"] == "InProgress":
        assert got["message"] == condition(obj, "Reconciling")["message"]
    else:
        assert got["message"] == "Resource is Ready"


def test_health_and_kstatus_agree_on_the_live_object_from_the_checker_too(
    gitops_check: GitopsCheck,
) -> None:
    """The same object on standard input (as the lab test sends it) gives the same."""
    obj = load(CUSTOMIZATION / "testdata" / "migrating.yaml")
    assert gitops_check.kstatus(obj)["status"] == "InProgress"
    assert gitops_check.argo_health(HEALTH_LUA, obj)["status"] == "Progressing"
    obj["status"]["conditions"] = [
        {**c, "status": "True"} if c["type"] == "Stalled" else {**c, "status": "False"}
        for c in obj["status"]["conditions"]
    ]
    assert gitops_check.kstatus(obj)["status"] == "Failed"
    assert gitops_check.argo_health(HEALTH_LUA, obj)["status"] == "Degraded"


def test_the_crd_never_lets_a_placement_look_current_before_the_operator_saw_it() -> None:
    """Why the no-status exception cannot happen: status defaults to observedGeneration -1,
    so kstatus, Flux and kubectl wait see InProgress until the operator writes status."""
    crd = crdgen.crds()["berth.dev_repositoryplacements.yaml"]
    (version,) = crd["spec"]["versions"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["default"] == {"observedGeneration": -1}
    assert version["subresources"]["status"] == {}


def test_flux_kustomization_waits_on_the_example_placements() -> None:
    docs = [d for f in sorted(FLUX.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    by_api = {(d["apiVersion"].split("/")[0], d["kind"]): d for d in docs}
    kustomization = by_api["kustomize.toolkit.fluxcd.io", "Kustomization"]
    source = by_api["source.toolkit.fluxcd.io", "GitRepository"]
    spec = kustomization["spec"]
    # kstatus health checks of every applied object: berth's conditions need no extra
    # healthChecks entries or CEL expressions.
    assert spec["wait"] is True and spec["timeout"]
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"]}
    folder = REPO_ROOT / spec["path"]
    resources = load(folder / "kustomization.yaml")["resources"]
    assert [load(folder / r)["kind"] for r in resources] == ["RepositoryPlacement"]
    # `kubectl apply -k gitops/flux` installs both.
    assert sorted(load(FLUX / "kustomization.yaml")["resources"]) == sorted(
        p.name for p in FLUX.glob("*.yaml") if p.name != "kustomization.yaml"
    )
