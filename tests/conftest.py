"""Shared fixtures. Lab-backed tests run as root on real namespaces, mounts and dockerds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth_lab import Lab, plan_lab
from cluster_fixture import cluster
from kube_fixtures import kubectl, namespace, server_version, suffix

# Fixtures for every test layer.
__all__ = ["cluster", "kubectl", "namespace", "server_version", "suffix"]

REPO_ROOT = Path(__file__).resolve().parent.parent
LAB_MARKERS = {
    "lab",
    "agent",
    "transfer",
    "apiserver",
    "e2e",
    "cli",
    "faults",
    "endpoints",
    "demo",
    "gitops",
    "monitoring",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs_root = any(LAB_MARKERS & {m.name for m in item.iter_markers()} for item in items)
    if needs_root and os.geteuid() != 0:
        raise pytest.UsageError(
            "lab tests need root (namespaces, loop devices): run as root, "
            "or select only unit tests with -m unit"
        )


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A two-host lab named 't' for the whole session, torn down at the end."""
    stale = Lab(plan_lab("t", hosts=2))
    stale.down()  # a previous run that was killed may have left it
    running = Lab(plan_lab("t", hosts=2, datastore_size="30G"), fault_injection=True).up()
    try:
        yield running
    finally:
        running.down()
