"""`berth-lab up --cluster`: a lab with its API server, operator and DNS server, without
the demo, driven as a newcomer would from the installed `berth-lab` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth_lab import plan_lab, procs
from berth_lab.dns import resolve
from berth_lab.kubeconfig import Kubectl
from berth_lab.leftovers import find_leftovers
from berth_lab.manifests import placement

pytestmark = [pytest.mark.lab, pytest.mark.e2e]
NAME = "tcl"
BERTH_LAB = [str(Path(sys.executable).parent / "berth-lab"), "--name", NAME]


def berth_lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BERTH_LAB, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def up() -> Iterator[dict[str, Any]]:
    """What `up --cluster -o json` printed; the lab is brought down afterwards, and must
    leave nothing behind: no mount, loop device, netns, link, process or file."""
    berth_lab("down")  # a run that was killed may have left it
    try:
        started = berth_lab(
            "up", "--cluster", "--hosts", "2", "--datastore-size", "1G", "-o", "json",
            timeout=300,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        yield json.loads(started.stdout)
    finally:
        down = berth_lab("down", timeout=180)
        assert down.returncode == 0, down.stderr
        left = find_leftovers(plan_lab(NAME))
        assert not left, f"berth-lab down left {left}"


@pytest.fixture(scope="module")
def kubectl(up: dict[str, Any]) -> Kubectl:
    """kubectl with the KUBECONFIG that `up` printed."""
    return Kubectl(Path(up["cluster"]["kubeconfig"]))


def status() -> dict[str, Any]:
    shown = berth_lab("status", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    state: dict[str, Any] = json.loads(shown.stdout)
    return state


def wait_observed(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    kubectl(
        "wait", "-n", namespace, f"rp/{name}", "--timeout=60s",
        "--for=jsonpath={.status.observedGeneration}=1",
        timeout=90,
    )  # fmt: skip
    obj: dict[str, Any] = kubectl.json("get", "-n", namespace, f"rp/{name}")
    return obj


def test_up_cluster_prints_the_kubeconfig_of_a_cluster_serving_the_hosts(
    up: dict[str, Any], kubectl: Kubectl
) -> None:
    cluster = up["cluster"]
    assert cluster["apiserver"]["running"] and cluster["operator"]["running"]
    assert cluster["dns"]["running"] and cluster["operator"]["namespaces"] == "all"
    machines = kubectl.json("get", "machines.berth.dev")["items"]
    ready = {
        m["metadata"]["name"]: next(c["status"] for c in m["status"]["conditions"])
        for m in machines
    }
    assert ready == {"host-a": "True", "host-b": "True"}
    text = berth_lab("status").stdout
    assert f"export KUBECONFIG={cluster['kubeconfig']}" in text


def test_a_placement_in_any_namespace_is_observed_by_the_labs_operator(
    up: dict[str, Any], kubectl: Kubectl
) -> None:
    kubectl("create", "namespace", "shop")
    # On a machine that does not exist: the operator says so, and nothing is created.
    kubectl.apply(placement("ghost", "shop", "host-z", []))
    obj = wait_observed(kubectl, "shop", "ghost")
    stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "UnknownMachine")


def test_the_dns_server_outlives_the_command_that_started_it(
    up: dict[str, Any], kubectl: Kubectl
) -> None:
    """named and external-dns keep running after `berth-lab up` returned: a record put in
    a DNSEndpoint is answered (the lab's zone is `lab.`)."""
    assert up["cluster"]["externalDNS"]["running"]
    address, port = up["cluster"]["dns"]["address"].rsplit(":", 1)
    kubectl.apply(
        {
            "apiVersion": "externaldns.k8s.io/v1alpha1",
            "kind": "DNSEndpoint",
            "metadata": {"name": "shop", "namespace": "default"},
            "spec": {
                "endpoints": [
                    {"dnsName": "shop.berth.lab", "recordType": "A", "targets": ["10.9.8.7"]}
                ]
            },
        }
    )
    answered: list[str] = []
    deadline = time.monotonic() + 30
    while not answered and time.monotonic() < deadline:
        answered = resolve("shop.berth.lab", (address, int(port)), timeout=1)[0]
        time.sleep(0.1)
    assert answered == ["10.9.8.7"]


def test_operator_restart_brings_a_dead_operator_back(up: dict[str, Any], kubectl: Kubectl) -> None:
    dead = status()["cluster"]["operator"]["pid"]
    os.kill(dead, signal.SIGKILL)  # the lab's own operator, by its pid
    while procs.alive(dead):
        time.sleep(0.05)
    shown = berth_lab("status")
    assert "operator       NOT running" in shown.stdout
    assert f"berth-lab --name {NAME} operator restart" in shown.stdout

    restarted = berth_lab("operator", "restart", "-o", "json")
    assert restarted.returncode == 0, restarted.stderr
    operator = json.loads(restarted.stdout)
    assert operator["running"] and operator["pid"] != dead
    assert status()["cluster"]["operator"]["pid"] == operator["pid"]
    kubectl("create", "namespace", "after", check=False)
    kubectl.apply(placement("later", "after", "host-z", []))
    wait_observed(kubectl, "after", "later")
