"""RepositoryPlacement manifests for the lab's demo, tests and benches (pure)."""

from __future__ import annotations

from typing import Any

from berth_common.agent_api.services import RepositoryServices

# What a placement's template says of a service; the agent's spec knows more (volumes,
# labels) that the CRD does not expose.
TEMPLATE_SERVICE_FIELDS = ("name", "image", "command", "environment", "checkpoint", "ports")


def template_services(services: RepositoryServices | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The agent's service specs as spec.template.services entries."""
    listed: list[dict[str, Any]] = (
        services.model_dump()["services"] if isinstance(services, RepositoryServices) else services
    )
    return [{k: s[k] for k in TEMPLATE_SERVICE_FIELDS if k in s} for s in listed]


def placement(
    name: str,
    namespace: str,
    machine: str,
    services: RepositoryServices | list[dict[str, Any]],
    size: str = "1G",
    **spec: Any,
) -> dict[str, Any]:
    """A placement of a repository named like the placement, created from a template of
    `services` on `machine`; further spec fields (dns, deletionPolicy, ...) as given."""
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "RepositoryPlacement",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "repository": name,
            "machine": machine,
            "template": {"size": size, "services": template_services(services)},
            **spec,
        },
    }
