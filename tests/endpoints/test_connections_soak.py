"""The connections soak: one TCP connection held open to pulse's own address while pulse
moves back and forth, ending with no request failed and the connection never reopened.

    BERTH_CONNECTION_SOAK_MOVES=100 .venv/bin/pytest -s tests/endpoints/test_connections_soak.py

About 10 s a move, so it runs only when BERTH_CONNECTION_SOAK_MOVES is set (the test
command's tests/endpoints/test_connections_survive.py holds 1 and 50 connections through
one move each). The client sends a request every 10 ms for the whole soak; its summary
is compared with the longest downtime of all the moves.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest

from berth_agent.apps import pulse
from berth_lab import Lab, manifests
from berth_lab.cluster import LabCluster
from berth_lab.kubeconfig import Kubectl
from e2e.helpers import move, wait_current

pytestmark = pytest.mark.endpoints
MOVES = int(os.environ.get("BERTH_CONNECTION_SOAK_MOVES", "0"))
NAME, HOST_PORT = "pulse-soaked", 8099
SLACK = 0.2


@pytest.mark.skipif(MOVES == 0, reason="a soak of ~10 s a move: set BERTH_CONNECTION_SOAK_MOVES")
@pytest.mark.timeout(300 + 60 * MOVES)
def test_a_connection_held_through_many_moves_never_fails(
    lab3: Lab, kubectl: Kubectl, namespace: str, cluster3: LabCluster
) -> None:
    address = str(lab3.plan.network[201])
    services = pulse.services(interval=0.5, host_port=HOST_PORT)
    cidr = f"{address}/{lab3.plan.network.prefixlen}"
    kubectl.apply(manifests.placement(NAME, namespace, "host-a", services, address={"cidr": cidr}))
    wait_current(kubectl, namespace, NAME)
    holder = subprocess.Popen(
        [*lab3.host("c").nsenter(), sys.executable, "-m", "berth_lab.holder",
         address, str(pulse.PORT), "--connections", "1"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    downtimes: list[float] = []
    started = time.monotonic()
    try:
        time.sleep(3)
        for number in range(1, MOVES + 1):
            to = "host-b" if number % 2 else "host-a"
            move(kubectl, namespace, NAME, to)
            obj = wait_current(kubectl, namespace, NAME, timeout=180)
            last = obj["status"]["lastMigration"]
            assert last["result"] == "Succeeded" and last["to"] == to, last
            downtimes.append(float(last["downtimeSeconds"]))
            if number % 10 == 0:
                print(f"[soak] {number} moves, last downtime {downtimes[-1]}s", flush=True)
            time.sleep(1)
        assert holder.poll() is None, "the client gave up"
        holder.send_signal(signal.SIGTERM)
        out, _ = holder.communicate(timeout=90)
    finally:
        holder.kill()
    held = json.loads(out)
    minutes = (time.monotonic() - started) / 60
    print(
        f"[soak] {MOVES} moves with one connection held: {held['requests']} requests, "
        f"{held['errors']} errors, {held['reconnects']} reconnects, longest wait "
        f"{held['longest_wait_s']}s; downtime median {statistics.median(downtimes):.3f}s, "
        f"longest {max(downtimes):.3f}s; {minutes:.1f} min"
    )
    assert held["errors"] == 0, held["first_errors"]
    assert held["reconnects"] == 0
    assert held["longest_wait_s"] <= max(downtimes) + SLACK
