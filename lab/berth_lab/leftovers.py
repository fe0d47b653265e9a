"""What a lab left on the machine: the check that `berth-lab down` removed everything.

Looks from the outside, by the names and paths the lab's plan gives, not in the lab's
state file: it must also see what a crashed or killed run left behind.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from berth_common.process import output
from berth_lab.plan import LabPlan
from berth_lab.procs import lab_processes


@dataclass(frozen=True)
class Leftovers:
    """Each kind of thing a lab makes that is still there; all empty once it is down."""

    mounts: list[str] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    checkpoint_copies: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(asdict(self).values())

    def as_dict(self) -> dict[str, list[str]]:
        return asdict(self)


def find_leftovers(plan: LabPlan) -> Leftovers:
    state_dir = str(plan.state_dir)
    netns_prefix, veth_prefix = f"berth-{plan.name}-", f"bl-{plan.name}-"
    mounts = [
        line
        for line in Path("/proc/mounts").read_text().splitlines()
        if f"{state_dir}/" in line or netns_prefix in line
    ]
    loops = [line for line in output(["losetup", "-a"]).splitlines() if f"{state_dir}/" in line]
    netns = [
        line.split()[0]
        for line in output(["ip", "netns", "list"]).splitlines()
        if line.startswith(netns_prefix)
    ]
    links = [
        link["ifname"]
        for link in json.loads(output(["ip", "-j", "link"]))
        if link["ifname"].startswith(veth_prefix) or link["ifname"] == plan.bridge
    ]
    return Leftovers(
        mounts=mounts,
        loops=loops,
        netns=netns,
        links=links,
        processes=[str(p) for p in lab_processes(plan.state_dir)],
        state=[state_dir] if plan.state_dir.exists() else [],
        checkpoint_copies=checkpoint_copies(plan.state_dir),
    )


# What docker 20.10's restore unpacks a checkpoint into (containerd's MkdirTemp in its
# TMPDIR) and never removes; one copy of the container's memory each.
CHECKPOINT_COPY = "ctrd-checkpoint*"
# Where a dockerd without a TMPDIR of its own would leave them.
MACHINE_TMP = (Path("/tmp"), Path("/var/tmp"))


def checkpoint_copies(*roots: Path) -> list[str]:
    """Checkpoint copies in the machine's temporary folders and anywhere under roots (a
    lab's hosts keep their datastores, with each repository's dockerd TMPDIR, there)."""
    found = [p for tmp in MACHINE_TMP for p in tmp.glob(CHECKPOINT_COPY)]
    found += [p for root in roots if root.exists() for p in root.rglob(CHECKPOINT_COPY)]
    return sorted(str(p) for p in found)
