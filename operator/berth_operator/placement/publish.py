"""Publishing where a placement answers: status.endpoints and its DNS records.

Called when a placement is settled and as soon as a move's target answered (before the
source is stopped and before Ready turns True), so clients that follow either the status
or the DNS names find the repository on its new machine at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from berth_api.v1alpha1 import RepositoryPlacementSpec
from berth_api.v1alpha1.placement_types import ServiceEndpoint
from berth_operator.agents import MachineAgents
from berth_operator.config import OperatorConfig
from berth_operator.dns_lookup import DNSLookup
from berth_operator.kube import Kube
from berth_operator.machine.inventory import Inventories, InventoryUnavailable
from berth_operator.placement.dns_check import DNSCheck, check_records
from berth_operator.placement.endpoints import (
    build_dns_endpoint,
    build_endpoints,
    dns_target,
    machine_address,
    record_type,
)

log = logging.getLogger("berth.operator.publish")


class PublishError(RuntimeError):
    """The DNS records could not be written (the reason is for a condition)."""


@dataclass(frozen=True)
class Published:
    endpoints: list[ServiceEndpoint] | None  # None: the agent's listing is unknown
    dns_hostnames: list[str]  # what the placement's DNSEndpoint now holds (status)
    # What the DNS server answers for them; None: nothing to wait for (no spec.dns, skip,
    # no server to ask, or already confirmed).
    dns: DNSCheck | None = None


Records = tuple[str, tuple[str, ...], int]  # address, hostnames, TTL


@dataclass
class WrittenRecords:
    records: Records
    at: float  # the publisher's clock
    answered: bool = False  # the DNS server was seen answering them


@dataclass(frozen=True)
class DNSConfirmation:
    """Where the records are confirmed (the operator's dns_check_server) and how long
    external-dns may take to put them there."""

    lookup: DNSLookup
    grace_seconds: float


def dns_confirmation(config: OperatorConfig) -> DNSConfirmation | None:
    if not config.dns_check_server:
        return None
    return DNSConfirmation(DNSLookup(config.dns_check_server), config.dns_check_grace_seconds)


class EndpointPublisher:
    def __init__(
        self,
        kube: Kube,
        agents: MachineAgents,
        inventories: Inventories,
        confirmation: DNSConfirmation | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube, self.agents, self.inventories = kube, agents, inventories
        self.confirmation, self.clock = confirmation, clock
        # What each placement's DNSEndpoint was last written with (by uid) and when: written
        # again only when that changes, or once after the operator starts. Once the DNS
        # server answers them they are not asked again (quiet at rest).
        self._written: dict[str, WrittenRecords] = {}

    def publish(
        self,
        obj: dict[str, Any],
        spec: RepositoryPlacementSpec,
        machine: str,
        recorded: list[str],
        *,
        confirm: bool = True,
    ) -> Published:
        """Where the repository's services answer on machine, after pointing the DNS
        names there unless spec.dns is skipped; without spec.dns, the records this
        placement wrote before (`recorded`, from status.dnsHostnames) are removed. A DNS
        write that fails raises PublishError. confirm: ask the DNS server whether the
        names answer there yet (not in a move's cutover: nothing waits on it there)."""
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
        target = dns_target(spec, address)
        wanted: Records = (target, tuple(spec.dns.hostnames), spec.dns.ttl)
        written = self._written.get(uid)
        if written is not None and written.records == wanted:
            check = self._check(obj, written) if confirm else None
            return Published(endpoints, list(spec.dns.hostnames), check)
        try:
            self.kube.apply_dns_endpoint(build_dns_endpoint(obj, spec.dns, target))
        except client.ApiException as err:
            raise PublishError(
                f"DNS records for {', '.join(spec.dns.hostnames)} not written: "
                f"{err.status} {err.reason} (is external-dns's DNSEndpoint CRD installed?)"
            ) from None
        written = self._written[uid] = WrittenRecords(wanted, self.clock())
        names = ", ".join(spec.dns.hostnames)
        self.kube.event(obj, "DNSUpdated", f"{names} -> {target} ({machine})")
        log.info(
            "dns records switched",
            extra={"placement": obj["metadata"]["name"], "address": target, "machine": machine},
        )
        check = self._check(obj, written) if confirm else None
        return Published(endpoints, list(spec.dns.hostnames), check)

    def _check(self, obj: dict[str, Any], written: WrittenRecords) -> DNSCheck | None:
        """What the DNS server answers for the names (None: nothing to wait for)."""
        if self.confirmation is None or written.answered:
            return None
        address, hostnames, _ = written.records
        lookup = self.confirmation.lookup
        answers = [lookup.ask(name, record_type(address)) for name in hostnames]
        waited = self.clock() - written.at
        check = check_records(
            lookup.server, address, answers, waited, self.confirmation.grace_seconds
        )
        if check.confirmed:
            written.answered = True
            log.info(
                "dns records answered",
                extra={
                    "placement": obj["metadata"]["name"],
                    "address": address,
                    "hostnames": list(hostnames),
                    "after_s": round(waited, 3),
                },
            )
        return check

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
