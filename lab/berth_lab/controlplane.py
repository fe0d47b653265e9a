"""A lab's Kubernetes side, for as long as the lab is up: `berth-lab up --cluster`, the demo.

A real etcd + kube-apiserver, berth's CRDs, the chart's RBAC, a Machine per host, the
operator (as the chart's ServiceAccount, reconciling placements in every namespace, the
chart's default) and the lab's DNS (named, with external-dns writing spec.dns's records).
Each is a process of the lab, found again by its pid file in the lab's state dir and
marked with the lab's OWNER_ENV: a later `berth-lab` command reports on them or restarts
the operator, and `Lab.down()` stops them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from berth_lab import procs
from berth_lab.cluster import LabCluster
from berth_lab.dns_service import EXTERNAL_DNS_MARKER, NAMED_MARKER, LabDNS
from berth_lab.host import LabError
from berth_lab.kube import KubeAPIServer
from berth_lab.kubeconfig import Kubectl
from berth_lab.lab import Lab

OPERATOR_MARKER = "berth_operator"


@dataclass(frozen=True)
class ProcessState:
    pid: int | None  # None: not running
    log: str

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class ClusterState:
    """What `berth-lab status` shows of a lab's Kubernetes side."""

    kubeconfig: Path  # the admin's: export KUBECONFIG=...
    server: str  # the kube-apiserver's URL
    apiserver: ProcessState
    operator: ProcessState
    dns: ProcessState  # named
    external_dns: ProcessState
    dns_address: str  # ADDRESS:PORT that answers spec.dns's names

    def to_json(self) -> dict[str, Any]:
        def process(state: ProcessState) -> dict[str, Any]:
            return {"pid": state.pid, "running": state.running, "log": state.log}

        return {
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "apiserver": process(self.apiserver),
            "operator": {**process(self.operator), "namespaces": "all"},
            "dns": {**process(self.dns), "address": self.dns_address},
            "externalDNS": process(self.external_dns),
        }


class LabControlPlane:
    """The API server, operator and DNS of one lab (see the module's doc)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        plan = lab.plan
        self.server = KubeAPIServer(plan.kube_dir, detached=True, env=plan.owner_env())
        self.dns = LabDNS.for_lab(plan, self.server.admin_kubeconfig)

    @classmethod
    def load(cls, lab: Lab) -> LabControlPlane:
        """The control plane a previous `up()` left running; LabError if there is none."""
        if not cls.exists(lab):
            raise LabError(
                f"lab {lab.plan.name!r} has no API server; bring one up with: "
                f"berth-lab{_name_flag(lab)} down && berth-lab{_name_flag(lab)} up --cluster"
            )
        return cls(lab)

    @staticmethod
    def exists(lab: Lab) -> bool:
        return (lab.plan.kube_dir / "admin.kubeconfig").exists()

    @property
    def admin_kubeconfig(self) -> Path:
        return self.server.admin_kubeconfig

    def kubectl(self) -> Kubectl:
        return self.server.kubectl()

    def _cluster(self) -> LabCluster:
        return LabCluster(self.lab, self.kubectl(), namespaces=[])  # all namespaces

    # --- lifecycle -----------------------------------------------------------------------
    def up(self) -> LabControlPlane:
        """Start everything and wait until the operator has every Machine Ready. On a
        failure the caller tears the lab down (Lab.down() stops what was started)."""
        self.server.start()
        self._cluster().up()
        self.dns.start()  # as the cluster admin: the records of every namespace
        return self

    def restart_operator(self, timeout: float = 60) -> int:
        """A fresh operator (the old one stopped if it still runs); its pid, once healthy."""
        if procs.pidfile_pid(self.lab.plan.kube_dir / "kube-apiserver.pid", "kube-apiserver"):
            operator = self._cluster().restart_operator(timeout)
            assert operator.proc is not None
            return operator.proc.pid
        raise LabError(
            f"the API server of lab {self.lab.plan.name!r} is not running: "
            f"berth-lab{_name_flag(self.lab)} down, then up --cluster"
        )

    # --- status --------------------------------------------------------------------------
    def state(self) -> ClusterState:
        plan = self.lab.plan
        address, port = self.dns.server
        return ClusterState(
            kubeconfig=self.admin_kubeconfig,
            server=_server_url(self.admin_kubeconfig),
            apiserver=_process(plan.kube_dir / "kube-apiserver.pid", "kube-apiserver"),
            operator=_process(plan.cluster_dir / "operator.pid", OPERATOR_MARKER),
            dns=_process(self.dns.named_pidfile, NAMED_MARKER),
            external_dns=_process(self.dns.external_dns_pidfile, EXTERNAL_DNS_MARKER),
            dns_address=f"{address}:{port}",
        )


def _process(pidfile: Path, marker: str) -> ProcessState:
    log = pidfile.with_suffix(".log")
    return ProcessState(pid=procs.pidfile_pid(pidfile, marker), log=str(log))


def _server_url(kubeconfig: Path) -> str:
    config = yaml.safe_load(kubeconfig.read_text())
    server: str = config["clusters"][0]["cluster"]["server"]
    return server


def _name_flag(lab: Lab) -> str:
    return "" if lab.plan.name == "lab" else f" --name {lab.plan.name}"
