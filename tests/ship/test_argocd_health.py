"""Argo CD's health check for RepositoryPlacement, run with gopher-lua as Argo CD runs it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from berth_operator.placement.conditions import (
    READY,
    RECONCILING,
    STALLED,
    Verdict,
    build_conditions,
)
from berth_operator.placement.reasons import Reason

if TYPE_CHECKING:
    from ship.conftest import GitopsCheck

pytestmark = pytest.mark.ship

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGOCD = REPO_ROOT / "gitops" / "argocd"
CUSTOMIZATION = ARGOCD / "berth.dev" / "RepositoryPlacement"
HEALTH_LUA = CUSTOMIZATION / "health.lua"
CM_KEY = "resource.customizations.health.berth.dev_RepositoryPlacement"


def cases() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load((CUSTOMIZATION / "health_test.yaml").read_text())[
        "tests"
    ]
    return tests


def load(path: Path) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(path.read_text())
    return obj


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_check_gives_the_expected_status(
    gitops_check: GitopsCheck, case: dict[str, Any]
) -> None:
    got = gitops_check.argo_health(HEALTH_LUA, CUSTOMIZATION / case["inputPath"])
    assert got == case["healthStatus"]


def test_every_testdata_file_is_a_case_and_every_verdict_is_covered() -> None:
    listed = {Path(c["inputPath"]).name for c in CASES}
    on_disk = {p.name for p in (CUSTOMIZATION / "testdata").glob("*.yaml")}
    assert listed == on_disk
    assert len(listed) == len(CASES), "a testdata file is listed twice"
    assert {c["healthStatus"]["status"] for c in CASES} == {"Healthy", "Progressing", "Degraded"}


def test_argocd_cm_carries_the_same_lua_byte_for_byte() -> None:
    cm = load(ARGOCD / "argocd-cm.yaml")
    assert (cm["apiVersion"], cm["kind"]) == ("v1", "ConfigMap")
    assert cm["metadata"]["name"] == "argocd-cm"
    assert set(cm["data"]) == {CM_KEY}
    assert cm["data"][CM_KEY] == HEALTH_LUA.read_text(), (
        "argocd-cm.yaml's Lua differs from health.lua: copy health.lua into it, indented"
    )


def test_sample_application_syncs_the_example_placements() -> None:
    app = load(ARGOCD / "application.yaml")
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    source = app["spec"]["source"]
    folder = REPO_ROOT / source["path"]
    assert (folder / "kustomization.yaml").is_file()
    placements = [load(folder / name) for name in load(folder / "kustomization.yaml")["resources"]]
    assert placements and all(p["kind"] == "RepositoryPlacement" for p in placements)


def test_checker_runs_scripts_in_argocds_restricted_lua(
    gitops_check: GitopsCheck, tmp_path: Path
) -> None:
    """What passes here passes in Argo CD: no string/math/os, a table or an error."""
    obj = load(CUSTOMIZATION / "testdata" / "placed.yaml")
    uses_string = tmp_path / "string.lua"
    uses_string.write_text('return {status = string.upper("healthy"), message = ""}\n')
    failed = gitops_check.run("argo-health", uses_string, obj=obj)
    assert failed.returncode == 1 and "string" in failed.stderr
    # Argo CD's built-in scripts get the standard libraries; a status it does not know
    # becomes Unknown.
    assert gitops_check.verdict("argo-health", "--open-libs", uses_string, obj=obj) == {
        "status": "Unknown",
        "message": "Lua returned an invalid health status",
    }
    not_a_table = tmp_path / "string-result.lua"
    not_a_table.write_text('return "Healthy"\n')
    failed = gitops_check.run("argo-health", not_a_table, obj=obj)
    assert failed.returncode == 1 and "expect table output" in failed.stderr
    # `obj` is the object itself, lists as 1-based sequences, numbers as numbers.
    reads_obj = tmp_path / "obj.lua"
    reads_obj.write_text(
        "return {status = 'Healthy', message = obj.status.conditions[1].type .. ' ' .."
        " (obj.metadata.generation + 1) .. ' ' .. obj.spec.template.services[1].ports[1].host}\n"
    )
    assert gitops_check.argo_health(reads_obj, obj) == {
        "status": "Healthy",
        "message": "Ready 2 8080",
    }


# --- the testdata is what the operator writes -------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_testdata_conditions_are_what_conditions_py_builds(case: dict[str, Any]) -> None:
    """Each input's conditions, rebuilt by the operator's own build_conditions, match:
    a change to conditions.py that the health check does not follow fails here."""
    obj = load(CUSTOMIZATION / case["inputPath"])
    conditions = (obj.get("status") or {}).get("conditions")
    if not conditions:
        assert (obj.get("status") or {}).get("observedGeneration", -1) == -1, (
            "only a placement the operator has not seen yet has no conditions"
        )
        return
    by_type = {c["type"]: c for c in conditions}
    assert set(by_type) == {READY, RECONCILING, STALLED}
    ready, reconciling, stalled = (
        by_type[t]["status"] == "True" for t in (READY, RECONCILING, STALLED)
    )
    assert [ready, reconciling, stalled].count(True) == 1, "the operator sets exactly one"
    deciding = by_type[[READY, RECONCILING, STALLED][[ready, reconciling, stalled].index(True)]]
    # Reason(): a reason the operator really writes (reasons.py), or ValueError.
    verdict = Verdict(ready, reconciling, stalled, Reason(deciding["reason"]), deciding["message"])
    generation = obj["status"]["observedGeneration"]
    stamp = conditions[0]["lastTransitionTime"]
    rebuilt = build_conditions([], verdict, generation, stamp)
    assert rebuilt == conditions
