"""CRDs applied for real: what a schema mistake or a status write does on a real server."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth_lab.kubeconfig import Kubectl, KubectlError, ensure_crds, load_manifests

pytestmark = pytest.mark.apiserver
HERE = Path(__file__).resolve().parent

WIDGETS = load_manifests(HERE / "widgets-crd.yaml")[0]


@pytest.fixture(scope="module")
def widgets(kubectl: Kubectl) -> Iterator[str]:
    created = ensure_crds(kubectl, [WIDGETS])
    yield WIDGETS["metadata"]["name"]
    for name in created:
        kubectl("delete", "crd", name, "--wait=false", check=False)


def variant(suffix: str, change: dict[str, Any]) -> dict[str, Any]:
    """The widgets CRD under another name (its own group), with one part replaced."""
    crd = copy.deepcopy(WIDGETS)
    group = f"{suffix}.test.berth.dev"
    crd["metadata"]["name"] = f"widgets.{group}"
    crd["spec"]["group"] = group
    crd["spec"]["versions"][0].update(change)
    return crd


def columns(table: str) -> dict[str, str]:
    """The one row of a `kubectl get` table by column; AGE becomes "*" (it varies)."""
    header, row = table.splitlines()
    names = header.split()
    starts = [header.index(n) for n in names] + [None]
    cells = {n: row[a:b].strip() for n, a, b in zip(names, starts, starts[1:], strict=False)}
    return {**cells, "AGE": "*"} if "AGE" in cells else cells


def test_crd_is_established_and_listed(kubectl: Kubectl, widgets: str) -> None:
    table = kubectl("get", "crds").stdout
    assert widgets in table.split()
    crd = kubectl.json("get", "crd", widgets)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}


def test_schema_rejects_a_wrong_type(kubectl: Kubectl, widgets: str, namespace: str) -> None:
    bad = {
        "apiVersion": "test.berth.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"size": "big"},
    }
    with pytest.raises(KubectlError) as error:
        kubectl.apply(bad)
    assert 'spec.size: Invalid value: "string": spec.size in body must be of type integer' in (
        error.value.stderr
    )


def test_printer_columns_show_spec_and_status(
    kubectl: Kubectl, widgets: str, namespace: str
) -> None:
    kubectl.apply(
        {
            "apiVersion": "test.berth.dev/v1",
            "kind": "Widget",
            "metadata": {"name": "columns", "namespace": namespace},
            "spec": {"size": 3},
        }
    )
    table = kubectl("get", "widgets", "columns", "-n", namespace).stdout
    assert columns(table) == {"NAME": "columns", "SIZE": "3", "READY": "", "AGE": "*"}


def test_status_goes_through_the_status_subresource_only(
    kubectl: Kubectl, widgets: str, namespace: str
) -> None:
    kubectl.apply(
        {
            "apiVersion": "test.berth.dev/v1",
            "kind": "Widget",
            "metadata": {"name": "status", "namespace": namespace},
            "spec": {"size": 1},
        }
    )
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Test"}]}}
    target = ("widget", "status", "-n", namespace, "--type=merge", "-p", json.dumps(ready))
    # With a status subresource, the main resource silently drops status changes: an
    # operator that writes status there would think it had, and never have.
    kubectl("patch", *target)
    assert "status" not in kubectl.json("get", "widget", "status", "-n", namespace)
    kubectl("patch", *target, "--subresource=status")
    got = kubectl.json("get", "widget", "status", "-n", namespace)
    assert got["status"]["conditions"][0]["status"] == "True"


def test_non_structural_schema_is_rejected(kubectl: Kubectl, suffix: str) -> None:
    # `spec` lists properties but has no type: not a structural schema, which
    # apiextensions.k8s.io/v1 refuses outright.
    crd = variant(f"nonstructural{suffix}", {})
    del crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["type"]
    with pytest.raises(KubectlError) as error:
        kubectl.apply(crd)
    assert (
        "openAPIV3Schema.properties[spec].type: Required value: "
        "must not be empty for specified object fields"
    ) in error.value.stderr
    assert kubectl("get", "crd", crd["metadata"]["name"], check=False).returncode != 0


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (
            {"name": "Size", "type": "integer", "jsonPath": "spec.size"},
            'JSONPath: Invalid value: "spec.size": must be a simple json path starting with .',
        ),
        (
            {"name": "Size", "type": "int", "jsonPath": ".spec.size"},
            'type: Invalid value: "int": must be one of boolean,date,integer,number,string',
        ),
    ],
    ids=["path-without-dot", "unknown-type"],
)
def test_bad_printer_column_is_rejected(
    kubectl: Kubectl, suffix: str, column: dict[str, str], message: str
) -> None:
    crd = variant(f"badcolumn{suffix}", {"additionalPrinterColumns": [column]})
    with pytest.raises(KubectlError) as error:
        kubectl.apply(crd)
    assert f"additionalPrinterColumns[0].{message}" in error.value.stderr
    assert kubectl("get", "crd", crd["metadata"]["name"], check=False).returncode != 0


def test_kubectl_apply_f_crds_is_accepted_as_the_readme_says(kubectl: Kubectl) -> None:
    """`kubectl apply -f crds/`, checked by the real server (dry run: a cluster the tests
    borrow keeps its own CRDs); the folder's README is not a manifest and is skipped."""
    crds_dir = HERE.parents[1] / "crds"
    out = kubectl("apply", "-f", str(crds_dir), "--dry-run=server").stdout
    applied = sorted(line.split()[0] for line in out.splitlines())
    assert applied == [
        "customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev",
        "customresourcedefinition.apiextensions.k8s.io/machines.berth.dev",
        "customresourcedefinition.apiextensions.k8s.io/repositoryplacements.berth.dev",
    ], out
