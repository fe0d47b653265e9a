"""Where a placement's services answer, and the DNS records that point there (pure).

The endpoints come from the agent's view of the running containers (their published
ports) and the machine's address (its agent endpoint's host). The DNS records go into an
external-dns DNSEndpoint that the placement owns, so deleting the placement removes them.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from berth_api.v1alpha1 import API_VERSION, DNSOptions, RepositoryPlacementSpec, ServiceEndpoint
from berth_common.agent_api.models import RepositoryStatus

DNS_API_VERSION = "externaldns.k8s.io/v1alpha1"
DNS_KIND = "DNSEndpoint"


def machine_address(machine: dict[str, Any]) -> str:
    """The host of the machine's agent endpoint (https://HOST:PORT): where its published
    ports are reached too."""
    host = urlsplit(str(machine["spec"]["endpoint"])).hostname
    if not host:
        raise ValueError(f"machine {machine['metadata']['name']!r} has no host in its endpoint")
    return host


def build_endpoints(
    machine: str, address: str, repository: RepositoryStatus
) -> list[dict[str, Any]]:
    """One entry per published port of each running service, as the agent reported: at
    the machine's address and the published port, or, for the service holding the
    repository's own address, there and at the container's port (no NAT between)."""
    found = [
        ServiceEndpoint(
            service=container.name,
            machine=machine,
            address=container.address or address,
            port=port.container if container.address else port.host,
            protocol=port.protocol,
        ).wire()
        for container in repository.containers
        if container.state == "running"
        for port in container.ports
    ]
    return sorted(found, key=lambda e: (e["service"], e["port"], e["protocol"]))


def dns_target(spec: RepositoryPlacementSpec, machine_address: str) -> str:
    """Where spec.dns's names point: the repository's own address when it has one (it
    does not change on a move), else the machine it runs on."""
    if spec.address is not None:
        return spec.address.cidr.split("/")[0]
    return machine_address


def record_type(address: str) -> str:
    try:
        return "AAAA" if ipaddress.ip_address(address).version == 6 else "A"
    except ValueError:
        return "CNAME"  # a machine known by name


def build_dns_endpoint(placement: dict[str, Any], dns: DNSOptions, address: str) -> dict[str, Any]:
    """The DNSEndpoint owned by the placement: every hostname pointing at address."""
    meta = placement["metadata"]
    return {
        "apiVersion": DNS_API_VERSION,
        "kind": DNS_KIND,
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {"app.kubernetes.io/managed-by": "berth"},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "RepositoryPlacement",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "endpoints": [
                {
                    "dnsName": hostname,
                    "recordType": record_type(address),
                    "recordTTL": dns.ttl,
                    "targets": [address],
                }
                for hostname in dns.hostnames
            ]
        },
    }
