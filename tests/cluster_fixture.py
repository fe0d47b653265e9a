"""berth installed on the real API server, its operator running as the chart's
ServiceAccount, managing the session's lab hosts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from berth_lab import Lab
from berth_lab.cluster import LabCluster
from berth_lab.kubeconfig import Kubectl


@pytest.fixture(scope="module")
def cluster(
    lab: Lab,
    kubectl: Kubectl,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[LabCluster]:
    running = LabCluster(lab, kubectl, [namespace])
    try:
        running.up()
        yield running
    finally:
        placed = kubectl.json("get", "rp", "-n", namespace, "-o", "json")["items"]
        running.down()
        _remove_repositories(lab, {p["spec"]["repository"] for p in placed})
        if running.operator:
            kept = tmp_path_factory.getbasetemp() / f"operator-{request.module.__name__}.log"
            shutil.copyfile(running.operator.log_path, kept)
            print(f"\n[e2e] operator log kept at {kept}")


def _remove_repositories(lab: Lab, names: set[str]) -> None:
    """The session's lab outlives this module: leave its hosts as we found them."""
    for host in lab.hosts:
        with lab.agent(host) as agent:
            for repo in agent.repositories():
                if repo.name in names:
                    agent.down(repo.name)
                    agent.delete(repo.name, confirm=repo.name)
