"""Generate the CRDs from the pydantic models into crds/ (the source of truth:
`kubectl apply -f crds/`) and into the chart's copy, charts/berth/files/crds/ (Helm reads
no file outside the chart). At the repository root: `python -m berth_api.crdgen`.

Pydantic's JSON schema becomes a structural OpenAPI v3 schema: references inlined,
`X | None` as nullable, titles dropped, plus the Kubernetes extensions (list-map
conditions, CEL rules, preserved unknown fields where the operator stores its own state).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from berth_api.v1alpha1 import GROUP, VERSION
from berth_api.v1alpha1.machine_types import MachineSpec, MachineStatus
from berth_api.v1alpha1.placement_types import (
    RepositoryPlacementSpec,
    RepositoryPlacementStatus,
)

Schema = dict[str, Any]


def _inline(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_inline(extra, defs)}
    out: Schema = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "properties":
            out[key] = {name: _inline(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _inline(value, defs)
    return _structural(out)


def _structural(node: Schema) -> Schema:
    variants = node.get("anyOf")
    if variants and len(variants) == 2 and {"type": "null"} in variants:
        other = next(v for v in variants if v != {"type": "null"})
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        node = {**other, **rest, "nullable": True}
        if node.get("default", 0) is None:
            del node["default"]
    if node.get("type") == "object" and node.get("additionalProperties") is True:
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    if (
        node.get("type") == "object"
        and "properties" not in node
        and ("additionalProperties" not in node)
    ):
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    node.pop("additionalProperties", None) if node.get("additionalProperties") is False else None
    return node


def schema_of(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: Schema = _inline(raw, raw.get("$defs", {}))
    rules = getattr(model, "CEL", None)
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def _with_conditions(status: Schema) -> Schema:
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return status


def _crd(
    kind: str,
    plural: str,
    short: list[str],
    scope: str,
    spec: type[BaseModel],
    status: type[BaseModel],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    status_schema = _with_conditions(schema_of(status))
    status_schema["default"] = {"observedGeneration": -1}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": ["berth"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": schema_of(spec),
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


READY = '.status.conditions[?(@.type=="Ready")].status'

# Where the generated files go, relative to the repository root: crds/ first, the chart's
# copy second. tests/unit/test_crds_generated.py fails when either differs from render().
CHART = Path("charts/berth")
OUTPUT_DIRS = (Path("crds"), CHART / "files" / "crds")
REGENERATE = "python -m berth_api.crdgen"

# kopf's peering resource, as kopf documents it. It belongs with berth's CRDs: the operator
# makes peering mandatory (berth_operator/handlers.py) and does not start without it, so
# `kubectl apply -f crds/` has to leave a cluster ready for the operator.
KOPF_PEERING_COMMENT = (
    "# kopf's peering resource: operator replicas see each other here, and only the one\n"
    "# with the highest priority works (operator/berth_operator/handlers.py). The operator\n"
    "# runs cluster-wide, so only the cluster-scoped kind is used.\n"
)


def kopf_peering_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": "Cluster",
            "names": {
                "kind": "ClusterKopfPeering",
                "plural": "clusterkopfpeerings",
                "singular": "clusterkopfpeering",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def crds() -> dict[str, dict[str, Any]]:
    """berth's own CRDs, from the models."""
    return {
        "berth.dev_repositoryplacements.yaml": _crd(
            "RepositoryPlacement",
            "repositoryplacements",
            ["rp"],
            "Namespaced",
            RepositoryPlacementSpec,
            RepositoryPlacementStatus,
            [
                {"name": "Machine", "type": "string", "jsonPath": ".spec.machine"},
                {"name": "Current", "type": "string", "jsonPath": ".status.currentMachine"},
                {"name": "Ready", "type": "string", "jsonPath": READY},
                {
                    "name": "Downtime",
                    "type": "number",
                    "jsonPath": ".status.lastMigration.downtimeSeconds",
                },
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        ),
        "berth.dev_machines.yaml": _crd(
            "Machine",
            "machines",
            ["bm"],
            "Cluster",
            MachineSpec,
            MachineStatus,
            [
                {"name": "Endpoint", "type": "string", "jsonPath": ".spec.endpoint"},
                {"name": "Ready", "type": "string", "jsonPath": READY},
                {"name": "Cordoned", "type": "boolean", "jsonPath": ".spec.cordoned"},
                {"name": "Free", "type": "integer", "jsonPath": ".status.freeBytes"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        ),
    }


def render() -> dict[str, str]:
    """Every file of crds/, by name: berth's CRDs and kopf's peering CRD."""
    header = f"# Generated from api/berth_api/v1alpha1 by `{REGENERATE}`. Do not edit.\n"
    files = {name: header + yaml.safe_dump(crd, sort_keys=False) for name, crd in crds().items()}
    files["kopf.dev_clusterkopfpeerings.yaml"] = (
        f"# Generated by `{REGENERATE}`. Do not edit.\n"
        + KOPF_PEERING_COMMENT
        + yaml.safe_dump(kopf_peering_crd(), sort_keys=False)
    )
    return files


def write(out: Path, files: dict[str, str]) -> list[Path]:
    """Make `out` hold exactly `files`: a CRD dropped from the models leaves no stale file
    that `kubectl apply -f` would still install. Other files (README.md) stay."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.yaml"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        (out / name).write_text(text)
        written.append(out / name)
    return written


def main(argv: list[str]) -> int:
    """No argument: write crds/ and the chart's copy (run at the repository root).
    With DIR arguments: write those instead."""
    dirs = [Path(a) for a in argv[1:]]
    if not dirs:
        if not (CHART / "Chart.yaml").exists():
            print(f"no {CHART} here: run `{REGENERATE}` at the repository root", file=sys.stderr)
            return 2
        dirs = list(OUTPUT_DIRS)
    files = render()
    for out in dirs:
        for path in write(out, files):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
