"""A repository's own address: its validation, and the gratuitous ARP that announces it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from berth_agent.apps import pulse
from berth_agent.runtime.garp import garp_frame
from berth_common.agent_api.services import RepositoryAddress, RepositoryServices

pytestmark = pytest.mark.unit


def test_an_address_is_a_host_of_its_segment_with_a_gateway() -> None:
    address = RepositoryAddress(cidr="10.251.214.200/24")
    assert str(address.ip) == "10.251.214.200"
    assert str(address.network) == "10.251.214.0/24"
    assert str(address.gateway_address) == "10.251.214.1"  # the segment's first, by default
    routed = RepositoryAddress(cidr="10.0.5.9/16", gateway="10.0.0.254")
    assert str(routed.gateway_address) == "10.0.0.254"


@pytest.mark.parametrize(
    "bad",
    [
        {"cidr": "10.251.214.200"},  # no prefix: which segment?
        {"cidr": "10.251.214.0/24"},  # the segment itself
        {"cidr": "10.251.214.255/24"},  # its broadcast
        {"cidr": "10.251.214.1/24"},  # the gateway
        {"cidr": "10.251.214.7/24", "gateway": "10.9.9.1"},  # a gateway off the segment
        {"cidr": "fd00::5/64"},  # IPv4 only, for now
        {"cidr": "10.251.214.7/24; rm -rf /"},
    ],
)
def test_a_bad_address_is_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        RepositoryAddress.model_validate(bad)


def test_the_address_goes_to_a_service_of_the_repository() -> None:
    services = pulse.services()
    with_address = services.with_address(RepositoryAddress(cidr="10.251.214.200/24"))
    assert with_address.address is not None and with_address.address_service == "pulse"
    with pytest.raises(ValueError, match="no service 'web'"):
        services.with_address(RepositoryAddress(cidr="10.251.214.200/24", service="web"))
    with pytest.raises(ValueError, match="which service"):
        RepositoryServices().with_address(RepositoryAddress(cidr="10.251.214.200/24"))


def test_a_gratuitous_arp_is_a_request_for_the_address_from_itself() -> None:
    frame = garp_frame("02:42:0a:fb:d6:c8", "10.251.214.200")
    assert len(frame) == 42
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == bytes.fromhex("02420afbd6c8")
    assert frame[12:14] == b"\x08\x06"  # ARP
    arp = frame[14:]
    assert arp[6:8] == b"\x00\x01"  # a request
    assert arp[8:14] == bytes.fromhex("02420afbd6c8")  # sender MAC
    assert arp[14:18] == arp[24:28] == bytes([10, 251, 214, 200])  # sender IP = target IP
    assert arp[18:24] == b"\x00" * 6
