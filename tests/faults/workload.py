"""The application the fault tests move, and what they check after every fault.

One repository runs two services (berth_lab.workloads): pulse (a counter held only in
memory) and ledger, a writer that appends numbered records, fsyncs each one and only then
acknowledges it in its log. After any fault the application must run on exactly one
machine, pulse's counter must never have restarted, and every record ledger acknowledged
must be in its file.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from berth_agent.apps import ledger, pulse
from berth_agent.runtime.spec import bridge_name
from berth_common.process import run
from berth_lab import Lab, manifests
from berth_lab.kubeconfig import Kubectl
from berth_lab.workloads import ledger_acks, ledger_records, pulse_and_ledger

PEM_IN_BASE64 = "LS0tLS1CRUdJTi"  # "-----BEGIN" base64-encoded: how every token starts
_DAEMONS = {"dockerd", "containerd", "containerd-shim-runc-v2", "docker-proxy"}
_AGENT = "-m berth_agent.cli --log-format json serve"  # as the lab starts each host's agent
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def place(kubectl: Kubectl, namespace: str, name: str, machine: str, port: int) -> None:
    kubectl.apply(manifests.placement(name, namespace, machine, pulse_and_ledger(port)))


def running_on(lab: Lab, name: str) -> list[str]:
    """The hosts where the repository's services run."""
    where = []
    for host in lab.hosts:
        with lab.agent(host) as agent:
            for repo in agent.repositories():
                if repo.name == name and repo.mounted and repo.docker.running:
                    states = [c.state for c in repo.containers]
                    if states and all(s == "running" for s in states):
                        where.append(host)
    return where


@dataclass
class Intact:
    host: str
    counter: int  # pulse's last beat
    records: int  # ledger's last durable record


def assert_intact(lab: Lab, name: str, acked_before: int) -> Intact:
    """Runs on one host; pulse never restarted; no record acknowledged before is lost."""
    where = running_on(lab, name)
    assert len(where) == 1, f"{name} runs on {where}, not on exactly one host"
    host = where[0]
    with lab.agent(host) as agent:
        counters = pulse.counters(agent.logs(name, "pulse", tail=10000))
    # The logs travel with the repository; the last 10000 beats cover half an hour.
    assert counters and counters == list(range(counters[0], counters[0] + len(counters))), (
        f"pulse's counter restarted or skipped: {ledger.runs(counters)}"
    )
    logged = ledger_acks(lab, host, name)  # first: the file read after holds at least these
    written = ledger_records(lab, host, name)
    lost = ledger.problems(written, logged, acked_before)
    assert not lost, "; ".join(lost)
    return Intact(host, counters[-1], len(written))


def pulse_gap(lab: Lab, host: str, name: str, since: dt.datetime) -> float:
    """The longest silence of pulse since `since` (UTC, naive), in seconds, from the
    timestamps Docker gave its beats (its logs travel with the repository)."""
    with lab.agent(host) as agent:
        heard = [t for t, _ in pulse.beats(agent.logs(name, "pulse", tail=10000)) if t >= since]
    assert len(heard) > 1, f"pulse beat {len(heard)} times since {since}"
    return max((b - a).total_seconds() for a, b in itertools.pairwise(heard))


def leftovers(lab: Lab) -> list[str]:
    """Mounts, loop devices, bridges and processes (dockerd, containerd, shims) of
    repositories no agent holds mounted, stale copies still mounted, unfinished
    transfers, any CRIU process, and any host without exactly one agent: what a fault
    must not leave once the application has settled. Container
    network namespaces are nsfs mounts under /run/berth/<guid>/, so they count as mounts."""
    found = []
    for name, host in lab.hosts.items():
        with lab.agent(name) as agent:
            repos = agent.repositories()
        mounted = {r.guid for r in repos if r.mounted}
        transfers = host.plan.datastore_mount / "transfers"
        if transfers.exists():  # partial images of transfers that will never finish
            found += [f"{name}: transfer {t.name}" for t in sorted(transfers.iterdir())]
        found += [f"{name}: stale copy {r.name} still mounted" for r in repos
                  if r.mounted and r.moved_to]  # fmt: skip
        for target in host.run(["findmnt", "-rn", "-o", "TARGET"]).stdout.decode().split():
            if target.startswith(("/var/lib/berth/mounts/", "/run/berth/")):
                guid = _GUID.search(target)
                if guid and guid.group() not in mounted:
                    found.append(f"{name}: mount {target}")
        # A loop device is known by its backing file's device and inode: every host sees
        # the others' loops too, with the same paths inside their own datastores.
        listing = "stat -c '%Hd:%Ld/%i %n' /var/lib/berth/images/*.img 2>/dev/null || true"
        images = host.run(["sh", "-c", listing]).stdout.decode().splitlines()
        inodes = dict(line.split(" ", 1) for line in images)
        listed = host.run(["losetup", "-J", "-l", "-O", "NAME,BACK-MAJ:MIN,BACK-INO"]).stdout
        for loop in json.loads(listed or b'{"loopdevices": []}')["loopdevices"]:
            device = loop["name"]
            image = inodes.get(f"{loop['back-maj:min'].strip()}/{loop['back-ino']}", "")
            guid = _GUID.search(image)
            if guid and guid.group() not in mounted:
                found.append(f"{name}: loop device {device} on {image}")
        running_bridges = {bridge_name(guid) for guid in mounted}
        links = json.loads(host.run(["ip", "-j", "link", "show", "type", "bridge"]).stdout)
        bridges = [link["ifname"] for link in links if link["ifname"].startswith("bb")]
        found += [f"{name}: bridge {b}" for b in bridges if b not in running_bridges]
        own_ns = host.run(["readlink", "/proc/self/ns/mnt"]).stdout.decode().strip()
        agents = []
        for pid, cmdline in _processes():
            try:
                if os.readlink(f"/proc/{pid}/ns/mnt") != own_ns:
                    continue
            except OSError:
                continue  # it exited meanwhile
            guid = _GUID.search(cmdline)
            program = os.path.basename(cmdline.split()[0])
            if program in _DAEMONS and guid and guid.group() not in mounted:
                found.append(f"{name}: process {pid} {cmdline[:100]}")
            elif program == "criu":  # dumps, restores and page servers end with their step
                found.append(f"{name}: CRIU still running: {pid} {cmdline[:100]}")
            elif _AGENT in cmdline:
                agents.append(pid)
        if len(agents) != 1:  # a restarted agent must not leave the old one behind
            found.append(f"{name}: {len(agents)} agents running: {agents}")
    return found


def _processes() -> list[tuple[int, str]]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmdline:
            out.append((int(entry), cmdline))
    return out


def fill_up(datastore: Path, leave: int) -> Path:
    """Fill a datastore until about `leave` bytes are free, in files under ballast/
    (one file of the whole free space fails on btrfs: it reports more than it gives)."""
    ballast = datastore / "ballast"
    ballast.mkdir(exist_ok=True)
    chunk = 1 << 30
    while chunk >= 1 << 20:
        free = shutil.disk_usage(datastore).free
        if free - chunk < leave:
            chunk //= 2
            continue
        piece = ballast / str(len(list(ballast.iterdir())))
        if run(["fallocate", "-l", str(chunk), str(piece)], check=False).returncode != 0:
            piece.unlink(missing_ok=True)
            chunk //= 2
    return ballast
