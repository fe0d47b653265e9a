"""A RepositoryPlacement deleted: its DNS records go (a cluster without a garbage
collector would keep them); deletionPolicy Retain (the default) keeps the repository's
data, Delete removes it from every machine."""

from __future__ import annotations

import logging
from typing import Any

from kubernetes.client import ApiException

from berth_operator.agents import MachineAgents
from berth_operator.kube import Kube

log = logging.getLogger("berth.operator.placement")


def deletion_has_work(spec: dict[str, Any]) -> bool:
    """Whether a placement's deletion must wait for the operator: only when it has DNS
    records to retire or data to remove. kopf adds its finalizer (and its bookkeeping
    annotation) to these placements alone, so the rest cost no write of their own and
    their namespace can be deleted while no operator runs."""
    return bool(spec.get("dns")) or spec.get("deletionPolicy", "Retain") == "Delete"


def delete_placement(
    kube: Kube, agents: MachineAgents, spec: dict[str, Any], meta: dict[str, Any]
) -> None:
    namespace, name = meta.get("namespace"), meta["name"]
    if spec.get("dns") and namespace:
        try:
            kube.delete_dns_endpoint(namespace, name, str(meta.get("uid")))
        except ApiException as err:  # its owner reference still lets a collector remove it
            log.warning("dns records not removed", extra={"placement": name, "error": err.reason})
    if spec.get("deletionPolicy", "Retain") != "Delete":
        return
    repository = spec["repository"]
    for machine in agents.machines.key_list():
        with agents.client(machine) as agent:
            if any(r.name == repository for r in agent.repositories()):
                agent.down(repository)
                agent.delete(repository, confirm=repository)
                log.info("repository deleted", extra={"repository": repository, "machine": machine})
