"""Bringing a lab up and down for real: namespaces, veths, loop-backed btrfs datastores.

`down()` works from what it can discover (names carry the lab's prefix, mounts live
under the lab's state dir), not only from the state file, so it also cleans up after a
run that crashed halfway through `up()`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from berth_common.agent_api.client import AgentClient
from berth_common.process import CommandError, output, run
from berth_lab import procs
from berth_lab.agents import LabPKI, agent_client, start_agent
from berth_lab.dns_service import stop_dns
from berth_lab.flux_service import stop_flux
from berth_lab.host import LabError, LabHost
from berth_lab.kube import reap_stale
from berth_lab.plan import (
    AGENT_PORT,
    CANONICAL_DATA_DIR,
    CANONICAL_PRIVATE_DIRS,
    HostPlan,
    LabPlan,
    plan_lab,
)
from berth_lab.prometheus_service import stop_prometheus

log = logging.getLogger("berth.lab")


class Lab:
    """A lab of `plan.hosts` simulated hosts. Use `up()`, `down()`, `status()`."""

    def __init__(self, plan: LabPlan, agents: bool = True, fault_injection: bool = False) -> None:
        self.plan = plan
        self.agents = agents
        self.fault_injection = fault_injection
        self.hosts: dict[str, LabHost] = {}

    # --- construction ------------------------------------------------------------
    @classmethod
    def load(cls, name: str = "lab") -> Lab:
        """The lab `name` as a previous `up()` left it; LabError if it is not up."""
        state_file = plan_lab(name).state_dir / "state.json"
        if not state_file.exists():
            raise LabError(f"lab {name!r} is not up (no {state_file}); run: berth-lab up")
        state = json.loads(state_file.read_text())
        lab = cls(
            plan_lab(
                name,
                hosts=len(state["hosts"]),
                bandwidth=state.get("bandwidth"),
                datastore_size=state["datastore_size"],
            )
        )
        lab.agents = state.get("agents", True)
        lab.fault_injection = state.get("fault_injection", False)
        for host_name, host_state in state["hosts"].items():
            lab.hosts[host_name] = LabHost(
                lab.plan.host(host_name), host_state["holder_pid"], host_state.get("agent_pid")
            )
        return lab

    @property
    def state_file(self) -> Path:
        return self.plan.state_dir / "state.json"

    def host(self, name: str) -> LabHost:
        plan = self.plan.host(name)
        if plan.name not in self.hosts:
            raise LabError(f"host {plan.name} is not running")
        return self.hosts[plan.name]

    # --- up ----------------------------------------------------------------------
    def up(self) -> Lab:
        """Create everything; on any failure tear down what was made and re-raise."""
        if self.state_file.exists() or _netns_with_prefix(self._netns_prefix()):
            raise LabError(
                f"lab {self.plan.name!r} is already up; run: berth-lab down"
                + ("" if self.plan.name == "lab" else f" --name {self.plan.name}")
            )
        _ensure_no_route_clash(self.plan)
        try:
            self.plan.state_dir.mkdir(parents=True, exist_ok=True)
            self._create_bridge()
            for host in self.plan.hosts:
                self.hosts[host.name] = self._create_host(host)
                self._save_state()
            if self.agents:
                self.pki.ensure(list(self.hosts.values()))
                for running in self.hosts.values():
                    self.start_agent(running)
            log.info("lab up", extra={"lab": self.plan.name, "hosts": len(self.hosts)})
            return self
        except BaseException:
            log.error("lab up failed; tearing down", extra={"lab": self.plan.name})
            self.down()
            raise

    def _netns_prefix(self) -> str:
        return f"berth-{self.plan.name}-"

    def _create_bridge(self) -> None:
        p = self.plan
        run(["ip", "link", "add", p.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{p.bridge_address}/{p.network.prefixlen}", "dev", p.bridge])
        run(["ip", "link", "set", p.bridge, "up"])

    def _create_host(self, host: HostPlan) -> LabHost:
        p = self.plan
        run(["ip", "netns", "add", host.netns])
        run(
            [
                "ip",
                "link",
                "add",
                host.veth_root,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.netns,
            ]
        )
        run(["ip", "link", "set", host.veth_root, "master", p.bridge, "up"])
        ns = ["ip", "-n", host.netns]
        run([*ns, "addr", "add", f"{host.address}/{p.network.prefixlen}", "dev", "eth0"])
        run([*ns, "link", "set", "eth0", "up"])
        run([*ns, "link", "set", "lo", "up"])
        run([*ns, "route", "add", "default", "via", str(p.bridge_address)])
        if p.bandwidth:
            # Shape both directions: the bridge side limits traffic into the host,
            # the host side limits traffic out of it.
            tbf = ["tbf", "rate", p.bandwidth, "burst", "256k", "latency", "50ms"]
            run(["tc", "qdisc", "add", "dev", host.veth_root, "root", *tbf])
            run(["tc", "-n", host.netns, "qdisc", "add", "dev", "eth0", "root", *tbf])

        host.state_dir.mkdir(parents=True, exist_ok=True)
        host.tmp_dir.mkdir(exist_ok=True)
        run(["truncate", "-s", p.datastore_size, str(host.datastore_image)])
        run(["mkfs.btrfs", "-q", "-f", "-L", f"berth-{host.name}", str(host.datastore_image)])
        host.datastore_mount.mkdir(exist_ok=True)
        # mount -o loop sets autoclear: the loop device goes away with the last mount.
        run(["mount", "-o", "loop", str(host.datastore_image), str(host.datastore_mount)])

        binds = [(host.datastore_mount, CANONICAL_DATA_DIR)]
        for canonical in CANONICAL_PRIVATE_DIRS:
            host.private_dir(canonical).mkdir(parents=True, exist_ok=True)
            binds.append((host.private_dir(canonical), canonical))
        for _, canonical in binds:
            canonical.mkdir(parents=True, exist_ok=True)
        script = " && ".join(f"mount --bind {src} {dst}" for src, dst in binds)
        holder = subprocess.Popen(
            [
                "nsenter",
                f"--net=/var/run/netns/{host.netns}",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                # Its own uptime: every process of the host sees its clocks ahead.
                "--time",
                "--monotonic",
                str(host.uptime_offset_s),
                "--boottime",
                str(host.uptime_offset_s),
                "sh",
                "-c",
                f"{script} && exec sleep infinity",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, **p.owner_env()},
        )
        deadline = time.monotonic() + 10
        while procs.comm(holder.pid) != "sleep":
            if holder.poll() is not None:
                err = holder.stderr.read().decode() if holder.stderr else ""
                raise LabError(f"{host.name}: namespace holder exited: {err.strip()}")
            if time.monotonic() > deadline:
                raise LabError(f"{host.name}: namespace holder did not start in 10 s")
            time.sleep(0.01)
        return LabHost(host, holder.pid)

    @property
    def pki(self) -> LabPKI:
        return LabPKI(self.plan.state_dir)

    def start_agent(self, host: LabHost) -> None:
        env = {**self.plan.owner_env(), "TMPDIR": str(host.plan.tmp_dir)}
        host.agent_pid = start_agent(host, self.pki, self.fault_injection, env=env)
        self._save_state()

    def stop_agent(self, host: LabHost) -> None:
        """Kill the agent only (its dockerds keep running, as after an agent crash)."""
        if host.agent_pid is not None and procs.alive(host.agent_pid):
            os.kill(host.agent_pid, signal.SIGKILL)
            while procs.alive(host.agent_pid):
                time.sleep(0.01)
        host.agent_pid = None
        self._save_state()

    def wait_agent_exit(self, name: str, timeout: float = 120) -> None:
        """Until the host's agent has exited (a crash point fired, see crash_agent_at)."""
        host = self.host(name)
        deadline = time.monotonic() + timeout
        while host.agent_pid is not None and procs.alive(host.agent_pid):
            if time.monotonic() > deadline:
                raise LabError(f"{host.name}: the agent is still running after {timeout:.0f}s")
            time.sleep(0.05)
        host.agent_pid = None
        self._save_state()

    def agent(self, name: str) -> AgentClient:
        return agent_client(self.host(name), self.pki)

    def _save_state(self) -> None:
        state: dict[str, Any] = {
            "name": self.plan.name,
            "bandwidth": self.plan.bandwidth,
            "datastore_size": self.plan.datastore_size,
            "agents": self.agents,
            "fault_injection": self.fault_injection,
            "hosts": {
                h.name: {"holder_pid": h.holder_pid, "agent_pid": h.agent_pid}
                for h in self.hosts.values()
            },
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    # --- status ------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        hosts = []
        for host in self.plan.hosts:
            running = self.hosts.get(host.name)
            alive = running is not None and procs.comm(running.holder_pid) == "sleep"
            entry: dict[str, Any] = {
                "name": host.name,
                "address": str(host.address),
                "netns": host.netns,
                "up": alive,
                "agent": {
                    "endpoint": f"https://{host.address}:{AGENT_PORT}",
                    "pid": running.agent_pid if running else None,
                    "running": bool(
                        running and running.agent_pid and procs.alive(running.agent_pid)
                    ),
                },
                "datastore": {
                    "image": str(host.datastore_image),
                    "path": str(CANONICAL_DATA_DIR),
                    "filesystem": "btrfs",
                },
            }
            if alive and running is not None:
                entry["datastore"].update(_df(running, CANONICAL_DATA_DIR))
            hosts.append(entry)
        return {
            "name": self.plan.name,
            "network": str(self.plan.network),
            "bridge": {"name": self.plan.bridge, "address": str(self.plan.bridge_address)},
            "bandwidth": self.plan.bandwidth,
            "pki": {
                "ca": str(self.pki.ca.cert),
                "clientCert": str(self.pki.client.cert),
                "clientKey": str(self.pki.client.key),
            },
            "hosts": hosts,
        }

    # --- down --------------------------------------------------------------------
    def down(self) -> None:
        """Remove every process, namespace, link, mount, loop device and file of the lab."""
        # The lab's API server, operator and DNS server (berth-lab up --cluster, the demo).
        reap_stale(self.plan.kube_dir)
        procs.kill_pidfile(self.plan.cluster_dir / "operator.pid", "berth_operator")
        stop_dns(self.plan.dns_dir)
        stop_prometheus(self.plan.monitoring_dir)
        stop_flux(self.plan.gitops_dir)
        prefix = self._netns_prefix()
        namespaces = set(_netns_with_prefix(prefix)) | {h.netns for h in self.plan.hosts}
        namespaces = {ns for ns in namespaces if Path(f"/var/run/netns/{ns}").exists()}
        pids: set[int] = {h.holder_pid for h in self.hosts.values()}
        pids |= {h.agent_pid for h in self.hosts.values() if h.agent_pid}
        for ns in namespaces:
            pids |= procs.netns_pids(ns)
        # Whatever else carries the lab's mark: also what a crashed run left, outside any
        # namespace of the lab (never the process running this, nor its parents).
        pids |= {p.pid for p in procs.lab_processes(self.plan.state_dir) if p.marked}
        pids -= {os.getpid()} | procs.ancestors(os.getpid())
        pids = {p for p in pids if procs.alive(p)}
        for host in self.hosts.values():
            _thaw_repositories(host)
        procs.terminate_trees(pids)
        for ns in namespaces:
            run(["ip", "netns", "del", ns], check=False)
        for link in [*_links_with_prefix(f"bl-{self.plan.name}-"), self.plan.bridge]:
            run(["ip", "link", "del", link], check=False)
        state_dir = self.plan.state_dir
        for mount in sorted(_mounts_under(state_dir), reverse=True):
            run(["umount", "-l", mount], check=False)
        _wait_loops_released(state_dir)
        if state_dir.exists():
            run(["rm", "-rf", "--one-file-system", str(state_dir)])
        self.hosts.clear()
        log.info("lab down", extra={"lab": self.plan.name})


def _thaw_repositories(host: LabHost) -> None:
    """A repository left fsfrozen (a freeze whose migration never ended) blocks every
    writer in it, uninterruptibly: its dockerd could then never be killed, and the
    host's namespaces, mounts and loop devices would outlive the lab."""
    if not procs.alive(host.holder_pid):
        return
    mounts = host.run(["cat", "/proc/self/mounts"], check=False).stdout.decode().splitlines()
    for line in mounts:
        point = line.split()[1]
        if point.startswith("/var/lib/berth/mounts/") and point.count("/") == 5:
            host.run(["fsfreeze", "--unfreeze", point], check=False)


def _netns_with_prefix(prefix: str) -> list[str]:
    names = output(["ip", "netns", "list"]).split("\n")
    return [line.split()[0] for line in names if line.startswith(prefix)]


def _links_with_prefix(prefix: str) -> list[str]:
    links = json.loads(output(["ip", "-j", "link", "show"]))
    return [link["ifname"] for link in links if link["ifname"].startswith(prefix)]


def _ensure_no_route_clash(plan: LabPlan) -> None:
    routes = json.loads(output(["ip", "-j", "route", "show"]))
    for route in routes:
        dst = route.get("dst", "")
        if dst == str(plan.network) or dst == str(plan.network.network_address):
            raise LabError(
                f"{plan.network} is already routed via {route.get('dev')}; pick another lab name"
            )


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def _wait_loops_released(state_dir: Path, timeout: float = 10) -> None:
    """Loop devices autoclear once their filesystem is released; detach any that linger."""
    deadline = time.monotonic() + timeout
    while True:
        loops = _loops_backed_by(state_dir)
        if not loops:
            return
        if time.monotonic() > deadline:
            for device in loops:
                with contextlib.suppress(CommandError):
                    run(["losetup", "-d", device])
            return
        time.sleep(0.05)


def _loops_backed_by(root: Path) -> list[str]:
    result = run(["losetup", "-J", "-l"], check=False)
    if not result.stdout.strip():
        return []
    devices = json.loads(result.stdout).get("loopdevices", [])
    return [d["name"] for d in devices if str(d.get("back-file", "")).startswith(str(root) + "/")]


def _df(host: LabHost, path: Path) -> dict[str, int]:
    result = host.run(["df", "-B1", "--output=size,avail", str(path)], check=False)
    lines = result.stdout.decode().split("\n")
    if result.returncode != 0 or len(lines) < 2:
        return {}
    size, avail = (int(x) for x in lines[1].split())
    return {"sizeBytes": size, "freeBytes": avail}
