"""berth installed on the real API server, its operator running as the chart's
ServiceAccount, managing the session's lab hosts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from berth_lab import Lab
from berth_lab.cluster import LabCluster
from berth_lab.kubeconfig import Kubectl


@pytest.fixture(scope="session")
def cluster(lab: Lab, kubectl: Kubectl, namespace: str) -> Iterator[LabCluster]:
    running = LabCluster(lab, kubectl, [namespace])
    try:
        running.up()
        yield running
    finally:
        if running.operator:
            print("\n[operator log tail]\n" + running.operator.log_tail(15))
        running.down()
