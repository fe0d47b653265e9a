"""Established connections survive a move: the repository keeps an address of its own.

pulse gets `spec.address` on the lab's segment. A client on the third host holds TCP
connections to that address and sends a request every 10 ms on each, through moves
between the two other hosts: no request fails, no connection is opened again, and the
longest wait for an answer stays within the move's downtime and 0.2 s. The connection
ends in pulse's own socket (no docker-proxy, no NAT), which CRIU carries with the process
(tcp-established); the address leaves the source with the frozen container and appears
on the target before CRIU restores the socket into it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from berth_agent.apps import pulse
from berth_lab import Lab, manifests
from berth_lab.dns import lookup
from berth_lab.dns_service import LabDNS
from berth_lab.kubeconfig import Kubectl
from e2e.helpers import move, wait_current

pytestmark = pytest.mark.endpoints
NAME, HOST_PORT, HOSTNAME = "pulse-held", 8097, "held.berth.lab"
SLACK = 0.2  # seconds a client may wait beyond the move's downtime


def address_of(lab: Lab) -> str:
    """An address of the lab's segment no host uses: the repository's own."""
    return str(lab.plan.network[200])


def endpoints(obj: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(e["machine"], e["address"], e["port"]) for e in obj["status"]["endpoints"]]


def held_through_a_move(
    lab: Lab, kubectl: Kubectl, namespace: str, to: str, connections: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The holder's summary across one move to `to`, and the placement after it."""
    holder = subprocess.Popen(
        [*lab.host("c").nsenter(), sys.executable, "-m", "berth_lab.holder",
         address_of(lab), str(pulse.PORT), "--connections", str(connections),
         "--seconds", "25"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(4)  # every connection open and answering first
        move(kubectl, namespace, NAME, to)
        obj = wait_current(kubectl, namespace, NAME, timeout=120)
        out, _ = holder.communicate(timeout=90)
    finally:
        holder.kill()
    return json.loads(out), obj


def check(held: dict[str, Any], obj: dict[str, Any], to: str) -> None:
    last = obj["status"]["lastMigration"]
    downtime = float(last["downtimeSeconds"])
    print(
        f"\n[connections] {held['connections']} held through {last['from']} -> {last['to']}: "
        f"{held['requests']} requests, {held['errors']} errors, {held['reconnects']} "
        f"reconnects, longest wait {held['longest_wait_s']}s; move downtime {downtime}s"
    )
    assert last["result"] == "Succeeded" and obj["status"]["currentMachine"] == to
    assert held["errors"] == 0, held["first_errors"]
    assert held["reconnects"] == 0
    assert held["requests"] > held["connections"] * 500, "the client did not keep asking"
    assert held["longest_wait_s"] <= downtime + SLACK, (
        f"a request waited {held['longest_wait_s']}s, the move's downtime was {downtime}s"
    )


def dns_updates(kubectl: Kubectl, namespace: str) -> list[str]:
    events = kubectl.json("get", "events", "-n", namespace, "-o", "json")["items"]
    return [
        e["message"]
        for e in events
        if e["reason"] == "DNSUpdated" and e["involvedObject"]["name"] == NAME
    ]


def test_a_held_connection_survives_a_move_without_an_error(
    lab3: Lab, kubectl: Kubectl, namespace: str, dns: LabDNS
) -> None:
    """Its name points at its own address, and a move changes neither."""
    address = address_of(lab3)
    prefix = lab3.plan.network.prefixlen
    services = pulse.services(interval=0.2, host_port=HOST_PORT)
    kubectl.apply(
        manifests.placement(
            NAME, namespace, "host-a", services, address={"cidr": f"{address}/{prefix}"},
            dns={"hostnames": [HOSTNAME], "ttl": 1},
        )
    )  # fmt: skip
    obj = wait_current(kubectl, namespace, NAME)
    assert endpoints(obj) == [("host-a", address, pulse.PORT)], "not at its own address"
    assert lookup(HOSTNAME, dns.server) == [address]
    assert len(dns_updates(kubectl, namespace)) == 1
    held, obj = held_through_a_move(lab3, kubectl, namespace, "host-b", connections=1)
    check(held, obj, "host-b")
    assert endpoints(obj) == [("host-b", address, pulse.PORT)]
    assert lookup(HOSTNAME, dns.server) == [address]
    assert len(dns_updates(kubectl, namespace)) == 1, "the move rewrote the DNS records"


def test_fifty_held_connections_survive_a_move_without_an_error(
    lab3: Lab, kubectl: Kubectl, namespace: str, dns: LabDNS
) -> None:
    wait_current(kubectl, namespace, NAME)
    held, obj = held_through_a_move(lab3, kubectl, namespace, "host-a", connections=50)
    check(held, obj, "host-a")
