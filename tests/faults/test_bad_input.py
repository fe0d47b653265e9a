"""Bad placements are refused by the real API server (schema patterns and CEL) before the
operator ever sees them, and a refused request leaves nothing behind."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from berth_lab.cluster import install_crds
from berth_lab.kubeconfig import Kubectl

pytestmark = pytest.mark.faults

GOOD: dict[str, Any] = {
    "apiVersion": "berth.dev/v1alpha1",
    "kind": "RepositoryPlacement",
    "metadata": {"name": "bad-input"},
    "spec": {
        "repository": "app",
        "machine": "host-a",
        "transfer": {"bandwidthLimit": "100M"},
        "template": {
            "size": "2G",
            "services": [{"name": "web", "image": "berth/busybox:1",
                          "ports": [{"container": 80, "host": 8080}]}],
        },
    },
}  # fmt: skip


def with_value(path: str, value: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(GOOD)
    node: Any = manifest["spec"]
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return manifest


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    install_crds(kubectl)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("repository", "../etc"),  # path traversal
        ("repository", "a;rm -rf /"),  # shell metacharacters
        ("repository", "$(reboot)"),
        ("repository", "a" * 64),  # overlong
        ("repository", ""),
        ("machine", "../host-a"),
        ("machine", "host a"),
        ("template.size", "-1G"),  # negative
        ("template.size", "0G"),
        ("template.size", "1G; id"),
        ("template.size", "1.5G"),
        ("template.services.0.name", "../web"),
        ("template.services.0.ports.0.host", -1),
        ("template.services.0.ports.0.container", 70000),
        ("transfer.bandwidthLimit", "-5M"),
        ("downtimeBudget", "soon"),
    ],
)
def test_a_bad_field_is_refused_and_nothing_is_created(
    crds: None, kubectl: Kubectl, namespace: str, path: str, value: Any
) -> None:
    manifest = with_value(path, value)
    manifest["metadata"]["namespace"] = namespace
    refused = kubectl("apply", "-f", "-", check=False, input=json.dumps(manifest))
    assert refused.returncode != 0, f"spec.{path}={value!r} was accepted"
    field = "spec." + path.split(".")[0]
    assert field in refused.stderr, refused.stderr
    left = kubectl("get", "rp", "bad-input", "-n", namespace, check=False)
    assert left.returncode != 0 and "NotFound" in left.stderr


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, {"cidr": "10.1.0.200/24"}),  # added later: the repository has none
        ({"cidr": "10.1.0.200/24"}, {"cidr": "10.1.0.201/24"}),
        ({"cidr": "10.1.0.200/24"}, None),
    ],
)
def test_the_address_of_a_placement_cannot_be_changed(
    crds: None, kubectl: Kubectl, namespace: str, before: Any, after: Any
) -> None:
    manifest = copy.deepcopy(GOOD)
    manifest["metadata"].update(name="addressed", namespace=namespace)
    if before is not None:
        manifest["spec"]["address"] = before
    kubectl.apply(manifest)
    try:
        patch = json.dumps({"spec": {"address": after}})
        refused = kubectl(
            "patch", "-n", namespace, "rp/addressed", "--type", "merge", "-p", patch, check=False
        )
        assert refused.returncode != 0 and "spec.address is immutable" in refused.stderr
        kept = kubectl.json("get", "-n", namespace, "rp/addressed", "-o", "json")
        assert kept["spec"].get("address") == before
    finally:
        kubectl("delete", "-n", namespace, "rp/addressed", "--wait=false", check=False)


def test_the_repository_of_a_placement_cannot_be_changed(
    crds: None, kubectl: Kubectl, namespace: str
) -> None:
    manifest = copy.deepcopy(GOOD)
    manifest["metadata"].update(name="renamed", namespace=namespace)
    kubectl.apply(manifest)
    try:
        patch = json.dumps({"spec": {"repository": "other"}})
        refused = kubectl(
            "patch", "-n", namespace, "rp/renamed", "--type", "merge", "-p", patch, check=False
        )
        assert refused.returncode != 0 and "spec.repository is immutable" in refused.stderr
        kept = kubectl.json("get", "-n", namespace, "rp/renamed", "-o", "json")
        assert kept["spec"]["repository"] == "app"
    finally:
        kubectl("delete", "-n", namespace, "rp/renamed", "--wait=false", check=False)
