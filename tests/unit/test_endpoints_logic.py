"""Where a placement answers and the DNS records pointing there (pure builders)."""

from __future__ import annotations

import pytest

from berth_api.v1alpha1 import DNSOptions, RepositoryPlacementSpec
from berth_common.agent_api.models import PublishedPort
from berth_operator.placement.endpoints import (
    build_dns_endpoint,
    build_endpoints,
    dns_target,
    machine_address,
    record_type,
)
from wire_fakes import container, repository

pytestmark = pytest.mark.unit

REPOSITORY = repository(
    "web",
    containers=[
        container("pulse", ports=[PublishedPort(container=8080, protocol="tcp", host=18000)]),
        container("dns", ports=[PublishedPort(container=53, protocol="udp", host=5353)]),
        container("batch", state="exited"),
    ],
)
PLACEMENT = {"metadata": {"name": "web", "namespace": "apps", "uid": "u-1"}}


def test_endpoints_are_the_running_services_published_ports_at_the_machines_address() -> None:
    assert build_endpoints("host-b", "10.1.0.3", REPOSITORY) == [
        {"service": "dns", "machine": "host-b", "address": "10.1.0.3", "port": 5353,
         "protocol": "udp"},
        {"service": "pulse", "machine": "host-b", "address": "10.1.0.3", "port": 18000,
         "protocol": "tcp"},
    ]  # fmt: skip
    assert build_endpoints("host-b", "10.1.0.3", repository("web")) == []


def test_a_service_with_the_repositorys_own_address_answers_there_at_its_own_port() -> None:
    held = container("pulse", ports=[PublishedPort(container=8080, protocol="tcp", host=18000)])
    held = held.model_copy(update={"address": "10.1.0.200"})
    assert build_endpoints("host-b", "10.1.0.3", repository("web", containers=[held])) == [
        {"service": "pulse", "machine": "host-b", "address": "10.1.0.200", "port": 8080,
         "protocol": "tcp"},
    ]  # fmt: skip
    spec = {"repository": "web", "machine": "host-b"}
    plain = RepositoryPlacementSpec.model_validate(spec)
    addressed = RepositoryPlacementSpec.model_validate(
        {**spec, "address": {"cidr": "10.1.0.200/24"}}
    )
    assert dns_target(plain, "10.1.0.3") == "10.1.0.3"
    assert dns_target(addressed, "10.1.0.3") == "10.1.0.200", "DNS must not follow the machine"


@pytest.mark.parametrize(
    ("endpoint", "address"),
    [
        ("https://10.1.0.3:7443", "10.1.0.3"),
        ("https://[fd00::3]:7443", "fd00::3"),
        ("https://host-b.example.com:7443", "host-b.example.com"),
    ],
)
def test_a_machines_address_is_its_agents_host(endpoint: str, address: str) -> None:
    machine = {"metadata": {"name": "host-b"}, "spec": {"endpoint": endpoint}}
    assert machine_address(machine) == address


def test_the_dns_endpoint_points_every_hostname_at_the_address_and_is_owned() -> None:
    dns = DNSOptions(hostnames=["web.example.com", "www.example.com"], ttl=30)
    body = build_dns_endpoint(PLACEMENT, dns, "10.1.0.3")
    assert body["apiVersion"] == "externaldns.k8s.io/v1alpha1" and body["kind"] == "DNSEndpoint"
    assert body["metadata"]["name"] == "web" and body["metadata"]["namespace"] == "apps"
    (owner,) = body["metadata"]["ownerReferences"]
    assert owner["kind"] == "RepositoryPlacement" and owner["uid"] == "u-1" and owner["controller"]
    assert body["spec"]["endpoints"] == [
        {"dnsName": "web.example.com", "recordType": "A", "recordTTL": 30, "targets": ["10.1.0.3"]},
        {"dnsName": "www.example.com", "recordType": "A", "recordTTL": 30, "targets": ["10.1.0.3"]},
    ]  # fmt: skip


def test_record_types_follow_the_address() -> None:
    assert [record_type(a) for a in ("10.1.0.3", "fd00::3", "host-b.example.com")] == [
        "A",
        "AAAA",
        "CNAME",
    ]


@pytest.mark.parametrize(
    "bad", [{"hostnames": []}, {"hostnames": ["Not A Name"]}, {"hostnames": ["a.b"], "ttl": 0}]
)
def test_bad_dns_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DNSOptions.model_validate(bad)
