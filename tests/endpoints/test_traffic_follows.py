"""Traffic follows the repository: status.endpoints and the DNS records after a move.

A third lab host runs a client that knows only a DNS name: it resolves it through the
lab's named, into which a real external-dns writes the DNSEndpoint records berth asks
for, and keeps connecting to pulse while pulse moves from host-a to host-b. The operator
asks the same named whether the names answer before it calls a placement Ready.
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
from berth_lab.dns_service import GRACE_SECONDS, LabDNS
from berth_lab.kubeconfig import Kubectl
from e2e.helpers import condition, move, placement, until, wait_current

pytestmark = pytest.mark.endpoints
NAME, PORT, HOSTNAME = "pulse-dns", 8095, "pulse.berth.lab"


def place(kubectl: Kubectl, namespace: str) -> None:
    services = pulse.services(interval=0.2, host_port=PORT)
    dns = {"hostnames": [HOSTNAME], "ttl": 1}
    kubectl.apply(manifests.placement(NAME, namespace, "host-a", services, dns=dns))


def dns_targets(kubectl: Kubectl, namespace: str) -> list[str]:
    obj = kubectl.json("get", "dnsendpoints", NAME, "-n", namespace, "-o", "json")
    return [t for e in obj["spec"]["endpoints"] for t in e["targets"]]


def endpoints(obj: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(e["machine"], e["address"], e["port"]) for e in obj["status"]["endpoints"]]


def test_a_client_that_follows_the_dns_name_keeps_reaching_pulse_through_a_move(
    lab3: Lab, kubectl: Kubectl, namespace: str, dns: LabDNS
) -> None:
    a, b = lab3.host("a").address, lab3.host("b").address
    place(kubectl, namespace)
    obj = wait_current(kubectl, namespace, NAME)
    assert endpoints(obj) == [("host-a", a, PORT)]
    assert dns_targets(kubectl, namespace) == [a]
    assert lookup(HOSTNAME, dns.server) == [a], "Ready before named answered the name"

    client = subprocess.Popen(
        [*lab3.host("c").nsenter(), sys.executable, "-m", "berth_lab.dns", "follow", HOSTNAME,
         "--server", "{}:{}".format(*dns.server), "--port", str(PORT),
         "--seconds", "30"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(3)  # the client reaches host-a for a while first
        move(kubectl, namespace, NAME, "host-b")
        obj = wait_current(kubectl, namespace, NAME, timeout=120)
        out, _ = client.communicate(timeout=60)
    finally:
        client.kill()
    followed = json.loads(out)
    print(f"\n[endpoints] client on host-c: {followed}")
    assert obj["status"]["currentMachine"] == "host-b"
    assert endpoints(obj) == [("host-b", b, PORT)], "status.endpoints did not follow"
    assert dns_targets(kubectl, namespace) == [b], "the DNS records did not follow"
    assert followed["addresses"] == [a, b], "the client did not follow the name to host-b"
    assert followed["last"] is not None and followed["answers"] > 100
    assert lookup(HOSTNAME, dns.server) == [b], "Ready before named answered the new address"


def test_a_dns_server_that_refuses_updates_leaves_the_placement_dns_not_updated(
    lab3: Lab, kubectl: Kubectl, namespace: str, dns: LabDNS
) -> None:
    """The move succeeds; the name cannot follow: the placement says so (DNSPending, then
    DNSNotUpdated with one Warning event after the grace) instead of turning Ready while
    clients are still sent to the machine it left, and turns Ready once the server
    accepts updates again."""
    name, hostname = "pulse-refused", "refused.berth.lab"
    a, b = lab3.host("a").address, lab3.host("b").address
    services = pulse.services(interval=0.5, host_port=PORT + 2)
    names = {"hostnames": [hostname], "ttl": 1}
    kubectl.apply(
        manifests.placement(name, namespace, "host-a", services, dns=names, deletionPolicy="Delete")
    )
    reasons: list[tuple[float, str]] = []

    def reason_now() -> str:
        obj = placement(kubectl, namespace, name)
        ready = condition(obj, "Ready")
        said = "Ready" if ready.get("status") == "True" else str(ready.get("reason", ""))
        if not reasons or reasons[-1][1] != said:
            reasons.append((time.monotonic(), said))
        return said

    try:
        wait_current(kubectl, namespace, name)
        assert lookup(hostname, dns.server) == [a]
        dns.refuse_updates()
        move(kubectl, namespace, name, "host-b")
        until("DNSNotUpdated", lambda: reason_now() == "DNSNotUpdated", GRACE_SECONDS + 90, 0.1)
        obj = placement(kubectl, namespace, name)
        ready = condition(obj, "Ready")
        print(
            f"\n[endpoints] refused: Ready={ready['status']} {ready['reason']}: {ready['message']}"
        )
        assert obj["status"]["lastMigration"]["result"] == "Succeeded"
        assert obj["status"]["currentMachine"] == "host-b"
        assert ready["status"] == "False" and ready["reason"] == "DNSNotUpdated"
        assert f"{hostname} -> {a}" in ready["message"], "the message names the stale answer"
        assert lookup(hostname, dns.server) == [a], "named accepted an update it must refuse"
        pending = [t for t, r in reasons if r == "DNSPending"]
        overdue = next(t for t, r in reasons if r == "DNSNotUpdated")
        assert pending, f"no DNSPending before DNSNotUpdated: {reasons}"
        waited = overdue - pending[0]
        print(
            f"[endpoints] DNSPending -> DNSNotUpdated after {waited:.1f}s (grace {GRACE_SECONDS}s)"
        )
        # The grace runs from the records' write, early in the cutover; DNSPending is
        # written once the move has ended (8.9 s before DNSNotUpdated in one CI run).
        assert waited >= GRACE_SECONDS / 2
        time.sleep(3)  # looked at again meanwhile: still one event
        events = kubectl.json("get", "events", "-n", namespace, "-o", "json")["items"]
        warned = [
            e for e in events
            if e["reason"] == "DNSNotUpdated" and e["involvedObject"]["name"] == name
        ]  # fmt: skip
        assert len(warned) == 1 and warned[0]["type"] == "Warning", warned
        assert (warned[0].get("count") or 1) == 1, warned
    finally:
        dns.refuse_updates(False)
    try:
        recovered = time.monotonic()
        wait_current(kubectl, namespace, name, timeout=60)
        print(
            f"[endpoints] updates accepted again: Ready after {time.monotonic() - recovered:.1f}s"
        )
        assert lookup(hostname, dns.server) == [b]
    finally:
        kubectl("delete", "-n", namespace, f"rp/{name}", "--timeout=120s", timeout=150)


def test_skip_dns_moves_the_repository_and_leaves_the_records(
    lab3: Lab, kubectl: Kubectl, namespace: str, dns: LabDNS
) -> None:
    before = dns_targets(kubectl, namespace)
    kubectl(
        "patch", "-n", namespace, f"rp/{NAME}", "--type", "merge", "-p",
        json.dumps({"spec": {"machine": "host-c", "dns": {"skip": True}}}),
    )  # fmt: skip
    obj = wait_current(kubectl, namespace, NAME, timeout=120)
    assert endpoints(obj) == [("host-c", lab3.host("c").address, PORT)]
    assert dns_targets(kubectl, namespace) == before, "skip: the records must stay as they were"
    events = kubectl.json("get", "events", "-n", namespace, "-o", "json")["items"]
    switched = [
        e for e in events if e["reason"] == "DNSUpdated" and e["involvedObject"]["name"] == NAME
    ]
    assert switched and not any(lab3.host("c").address in e["message"] for e in switched)
    assert placement(kubectl, namespace, NAME)["spec"]["dns"]["skip"] is True


def test_records_go_when_spec_dns_goes_and_when_the_placement_goes(
    lab3: Lab, kubectl: Kubectl, namespace: str, dns: LabDNS
) -> None:
    """The lab runs no garbage collector, so this shows the operator removing what it
    wrote: names that stayed would keep pointing at a machine the repository left."""
    name, names = "pulse-gone", {"hostnames": ["gone.berth.lab"], "ttl": 1}
    services = pulse.services(interval=0.5, host_port=PORT + 1)
    manifest = manifests.placement(
        name, namespace, "host-a", services, dns=names, deletionPolicy="Delete"
    )
    kubectl.apply(manifest)

    def records() -> bool:
        got = kubectl("get", "dnsendpoints", name, "-n", namespace, check=False)
        return got.returncode == 0

    try:
        wait_current(kubectl, namespace, name)
        assert records()
        dropped = json.dumps({"spec": {"dns": None}})
        kubectl("patch", "-n", namespace, f"rp/{name}", "--type", "merge", "-p", dropped)
        until("the records to go with spec.dns", lambda: not records(), 30, 0.2)
        restored = json.dumps({"spec": {"dns": names}})
        kubectl("patch", "-n", namespace, f"rp/{name}", "--type", "merge", "-p", restored)
        until("the records to come back with spec.dns", records, 30, 0.2)
    finally:
        kubectl("delete", "-n", namespace, f"rp/{name}", "--timeout=120s", timeout=150)
    assert not records(), "the records outlived their placement"
