"""The endpoints tests' lab: three hosts (the third runs the clients) and a cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from berth_lab import Lab
from berth_lab.cluster import LabCluster
from berth_lab.dns_service import LabDNS
from berth_lab.kubeconfig import Kubectl
from berth_lab.scratch import three_hosts


@pytest.fixture(scope="module")
def lab3() -> Iterator[Lab]:
    with three_hosts("e", "8G") as running:
        yield running


@pytest.fixture(scope="module")
def cluster3(lab3: Lab, kubectl: Kubectl, namespace: str) -> Iterator[LabCluster]:
    running = LabCluster(lab3, kubectl, [namespace]).up()
    try:
        yield running
    finally:
        running.down()
        for host in lab3.hosts:
            with lab3.agent(host) as agent:
                for repo in agent.repositories():
                    agent.down(repo.name)
                    agent.delete(repo.name, confirm=repo.name)


@pytest.fixture(scope="module")
def dns(lab3: Lab, kubectl: Kubectl, cluster3: LabCluster) -> Iterator[LabDNS]:
    with LabDNS.for_lab(lab3.plan, kubectl.kubeconfig) as server:
        yield server
