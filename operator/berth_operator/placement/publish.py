"""Publishing where a placement answers: status.endpoints and its DNS records.

Called when a placement is settled and as soon as a move's target answered (before the
source is stopped and before Ready turns True), so clients that follow either the status
or the DNS names find the repository on its new machine at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from berth_api.v1alpha1 import RepositoryPlacementSpec
from berth_api.v1alpha1.placement_types import ServiceEndpoint
from berth_operator.agents import MachineAgents
from berth_operator.kube import Kube
from berth_operator.machine.inventory import Inventories, InventoryUnavailable
from berth_operator.placement.endpoints import (
    build_dns_endpoint,
    build_endpoints,
    machine_address,
)

log = logging.getLogger("berth.operator.publish")


class PublishError(RuntimeError):
    """The DNS records could not be written (the reason is for a condition)."""


@dataclass(frozen=True)
class Published:
    endpoints: list[ServiceEndpoint] | None  # None: the agent's listing is unknown
    dns_hostnames: list[str]  # what the placement's DNSEndpoint now holds (status)


class EndpointPublisher:
    def __init__(self, kube: Kube, agents: MachineAgents, inventories: Inventories) -> None:
        self.kube, self.agents, self.inventories = kube, agents, inventories
        # What each placement's DNSEndpoint was last written with (by uid): written again
        # only when that changes, or once after the operator starts.
        self._written: dict[str, tuple[str, tuple[str, ...], int]] = {}

    def publish(
        self,
        obj: dict[str, Any],
        spec: RepositoryPlacementSpec,
        machine: str,
        recorded: list[str],
    ) -> Published:
        """Where the repository's services answer on machine, after pointing the DNS
        names there unless spec.dns is skipped; without spec.dns, the records this
        placement wrote before (`recorded`, from status.dnsHostnames) are removed. A DNS
        write that fails raises PublishError."""
        address = machine_address(self.agents.machine(machine))
        endpoints = None
        try:
            found = [r for r in self.inventories.get(machine) if r.name == spec.repository]
        except InventoryUnavailable as err:
            log.warning("endpoints not refreshed", extra={"machine": machine, "error": str(err)})
        else:
            if found:
                built = build_endpoints(machine, address, found[0])
                endpoints = [ServiceEndpoint.model_validate(e) for e in built]
        uid = obj["metadata"]["uid"]
        if spec.dns is None:
            if recorded:
                self._retire(obj)
            return Published(endpoints, [])
        if spec.dns.skip:
            return Published(endpoints, recorded)
        wanted = (address, tuple(spec.dns.hostnames), spec.dns.ttl)
        if self._written.get(uid) == wanted:
            return Published(endpoints, list(spec.dns.hostnames))
        try:
            self.kube.apply_dns_endpoint(build_dns_endpoint(obj, spec.dns, address))
        except client.ApiException as err:
            raise PublishError(
                f"DNS records for {', '.join(spec.dns.hostnames)} not written: "
                f"{err.status} {err.reason} (is external-dns's DNSEndpoint CRD installed?)"
            ) from None
        self._written[uid] = wanted
        names = ", ".join(spec.dns.hostnames)
        self.kube.event(obj, "DNSUpdated", f"{names} -> {address} ({machine})")
        log.info(
            "dns records switched",
            extra={"placement": obj["metadata"]["name"], "address": address, "machine": machine},
        )
        return Published(endpoints, list(spec.dns.hostnames))

    def _retire(self, obj: dict[str, Any]) -> None:
        """spec.dns was removed: its names must not keep pointing at a machine the
        repository may leave."""
        meta = obj["metadata"]
        try:  # a cluster without the DNSEndpoint kind answers 404: nothing to remove
            deleted = self.kube.delete_dns_endpoint(meta["namespace"], meta["name"], meta["uid"])
        except client.ApiException as err:
            raise PublishError(
                f"the DNS records of a placement without spec.dns were not removed: "
                f"{err.status} {err.reason}"
            ) from None
        self._written.pop(meta["uid"], None)
        if deleted:
            self.kube.event(obj, "DNSRemoved", "spec.dns was removed: its DNS records are deleted")
            log.info("dns records removed", extra={"placement": meta["name"]})
