"""Generate the CRDs in charts/berth/files/crds/ from the pydantic models:
`python -m berth_api.crdgen [DIR]`.

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


def crds() -> dict[str, dict[str, Any]]:
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
    header = (
        "# Generated from api/berth_api/v1alpha1 by `python -m berth_api.crdgen`. Do not edit.\n"
    )
    return {name: header + yaml.safe_dump(crd, sort_keys=False) for name, crd in crds().items()}


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "charts/berth/files/crds")
    for name, text in render().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
