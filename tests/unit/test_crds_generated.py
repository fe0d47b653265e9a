"""crds/ and the chart's copy hold exactly what the pydantic models generate."""

import re
from pathlib import Path

import pytest
import yaml

from berth_api.crdgen import OUTPUT_DIRS, REGENERATE, crds, render
from berth_api.v1alpha1 import RepositoryPlacementStatus

pytestmark = pytest.mark.unit
REPO_ROOT = Path(__file__).resolve().parents[2]
# What `kubectl apply -f DIR` reads from a directory (README.md is left alone).
MANIFEST_SUFFIXES = {".yaml", ".yml", ".json"}


def test_crds_dir_and_the_charts_copy_are_what_the_models_generate() -> None:
    generated = render()
    assert [str(d) for d in OUTPUT_DIRS] == ["crds", "charts/berth/files/crds"]
    for directory in OUTPUT_DIRS:
        committed = {
            path.name: path.read_text()
            for path in sorted((REPO_ROOT / directory).iterdir())
            if path.suffix in MANIFEST_SUFFIXES
        }
        fix = f"regenerate with `{REGENERATE}` at the repository root"
        missing, extra = generated.keys() - committed.keys(), committed.keys() - generated.keys()
        assert not missing, f"{directory}: {sorted(missing)} missing: {fix}"
        assert not extra, f"{directory}: {sorted(extra)} not generated from the models: {fix}"
        differ = sorted(name for name, text in generated.items() if committed[name] != text)
        assert not differ, f"{directory}: {differ} differ from the models: {fix}"


def _walk(node: object, path: str = "") -> list[str]:
    """Paths of schema nodes that a structural schema forbids or needs."""
    problems = []
    if isinstance(node, dict):
        if "$ref" in node or ("anyOf" in node and any("type" in v for v in node["anyOf"])):
            problems.append(path)
        if "properties" in node and node.get("type") != "object":
            problems.append(f"{path} (properties without type: object)")
        for key, value in node.items():
            problems += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            problems += _walk(value, f"{path}[{i}]")
    return problems


def test_schemas_are_structural_and_carry_the_kubernetes_extensions() -> None:
    placement = crds()["berth.dev_repositoryplacements.yaml"]
    version = placement["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []
    spec, status = schema["properties"]["spec"], schema["properties"]["status"]
    assert spec["x-kubernetes-validations"][0]["rule"] == "self.repository == oldSelf.repository"
    assert status["properties"]["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["properties"]["observedGeneration"]["default"] == -1
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Machine",
        "Current",
        "Ready",
        "Downtime",
        "Phase",
        "Age",
    ]
    assert placement["spec"]["names"]["shortNames"] == ["rp"]
    assert yaml.safe_load(render()["berth.dev_machines.yaml"])["spec"]["scope"] == "Cluster"


def test_every_status_field_the_operator_writes_is_in_the_schema() -> None:
    """A field missing from the schema is pruned by the API server without an error:
    status.retry once vanished that way, and with it the retry back-off."""
    operator = Path(__file__).resolve().parents[2] / "operator" / "berth_operator"
    # A placement's status is written as RepositoryPlacementStatus, field by field; a
    # Machine's is still built as a dict in machine/.
    placement = RepositoryPlacementStatus.model_fields
    written: dict[str, set[str]] = {
        "placement": {f.alias or name for name, f in placement.items()},
        "machine": set(),
    }
    for source in (operator / "machine").glob("*.py"):
        written["machine"] |= set(re.findall(r'status\["([A-Za-z]+)"\]', source.read_text()))
    for kind, crd in (
        ("placement", "berth.dev_repositoryplacements.yaml"),
        ("machine", "berth.dev_machines.yaml"),
    ):
        schema = crds()[crd]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        allowed = set(schema["properties"]["status"]["properties"])
        assert written[kind], f"found no status writes for {kind}"
        assert written[kind] <= allowed, f"{kind}: pruned by the server: {written[kind] - allowed}"
