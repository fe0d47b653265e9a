"""The committed CRDs are exactly what the pydantic models generate."""

import re
from pathlib import Path

import pytest
import yaml

from berth_api.crdgen import crds, render

pytestmark = pytest.mark.unit
CRDS = Path(__file__).resolve().parents[2] / "charts" / "berth" / "files" / "crds"


def test_committed_crds_match_the_models() -> None:
    for name, text in render().items():
        committed = CRDS / name
        assert committed.exists(), f"{name} missing: run python -m berth_api.crdgen"
        assert committed.read_text() == text, (
            f"{name} differs from the models: run python -m berth_api.crdgen"
        )


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
    written: dict[str, set[str]] = {"placement": set(), "machine": set()}
    for kind in written:
        for source in (operator / kind).glob("*.py"):
            written[kind] |= set(re.findall(r'status\["([A-Za-z]+)"\]', source.read_text()))
    for kind, crd in (
        ("placement", "berth.dev_repositoryplacements.yaml"),
        ("machine", "berth.dev_machines.yaml"),
    ):
        schema = crds()[crd]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        allowed = set(schema["properties"]["status"]["properties"])
        assert written[kind], f"found no status writes for {kind}"
        assert written[kind] <= allowed, f"{kind}: pruned by the server: {written[kind] - allowed}"
