"""The floor under a live move, without docker: a bare `criu dump` + `criu restore` of the
same process trees as a repository's checkpointed containers (pulse: sh, its busybox nc
listener and its sleep), started as plain processes from pulse's root filesystem, timed
from the first dump's start until the restored pulse answers its port. No prober load.

    python bench/criu_floor.py --port 19000 --scratch /var/lib/berth --services JSON

prints the times as JSON. downtime_bench.py runs it inside a lab host (`measure`). It runs
in a process of its own because it reaps the trees itself: a restore needs the dumped
pids back, and the orphaned children of a dumped tree would otherwise wait for init to
reap them (over a second on these machines). CRIU gets the options runc gives it on
berth's hosts (hack/install-criu.sh writes them to /etc/criu/runc.conf).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from berth_agent.runtime.images import pulse_rootfs
from berth_common.agent_api.services import RepositoryServices
from berth_common.process import CommandError, run
from prober import pulse_answers

CRIU = "/usr/local/sbin/criu"
CRIU_OPTIONS = ("--tcp-established", "--skip-in-flight")  # as in /etc/criu/runc.conf
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PR_SET_CHILD_SUBREAPER = 36  # prctl(2)
WAIT_S = 30.0


@dataclass(frozen=True)
class Tree:
    """A process tree to checkpoint: a container's command and environment."""

    name: str
    argv: Sequence[str]
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FloorTimes:
    """Seconds: checkpointing (every dump), restoring (every restore), then until pulse
    answered. docker's floor (downtime_bench.py) has the same parts."""

    checkpoint: float
    restore: float
    answer: float

    @property
    def total(self) -> float:
        return self.checkpoint + self.restore + self.answer

    def record(self) -> dict[str, float]:
        """For the results' JSON."""
        return {k: round(v, 4) for k, v in {**asdict(self), "total": self.total}.items()}


def trees(services: RepositoryServices, port: int) -> list[Tree]:
    """The checkpointed services as trees; pulse answers on port (a container has a
    network namespace of its own for its port, a bare tree shares the host's)."""
    return [
        Tree(s.name, s.command or [], {**s.environment, **pulse_port(s.environment, port)})
        for s in services.services
        if s.checkpoint
    ]


def pulse_port(environment: Mapping[str, str], port: int) -> dict[str, str]:
    return {"PULSE_PORT": str(port)} if "PULSE_PORT" in environment else {}


def measure(
    enter: Sequence[str], services: RepositoryServices, port: int, scratch: str
) -> FloorTimes:
    """The floor on a host: this file run by the argv prefix enter (nsenter into a lab
    host; nothing for this machine), its files in a folder under scratch inside it."""
    script = str(Path(__file__).resolve())
    options = ["--port", str(port), "--scratch", scratch, "--services", services.model_dump_json()]
    got = run([*enter, sys.executable, script, *options], timeout=180)
    return FloorTimes(**json.loads(got.stdout))


def bare_criu_floor(trees: Sequence[Tree], rootfs: bytes, port: int, scratch: str) -> FloorTimes:
    """Start trees from rootfs (a tar), wait until pulse answers on port, then dump every
    tree and restore every tree, one after the other as the agent does. Needs to be the
    trees' subreaper (main)."""
    folder = Path(scratch) / f"criu-floor-{uuid.uuid4().hex[:8]}"
    root = folder / "root"
    for path in [root, *(images(folder, tree) for tree in trees)]:
        path.mkdir(parents=True)
    originals: list[subprocess.Popen[bytes]] = []
    try:
        run(["tar", "-x", "-C", str(root)], input=rootfs)
        # sh reads a background job's stdin from /dev/null (pulse's nc): docker gives a
        # container one, a bare tree gets its own node.
        run(["mknod", "-m", "666", str(root / "dev/null"), "c", "1", "3"])
        originals += [start(root, tree) for tree in trees]
        wait_answering(port)
        time.sleep(0.3)  # the answer to that probe finishes: a tree at rest
        t0 = time.monotonic()
        for tree, original in zip(trees, originals, strict=True):
            criu(folder, tree, "dump", "-t", str(original.pid))
            original.wait()
            reap(original.pid)  # the restore needs the tree's pids back
        t1 = time.monotonic()
        for tree in trees:
            criu(folder, tree, "restore", "-d")
        t2 = time.monotonic()
        wait_answering(port)
        t3 = time.monotonic()
    finally:
        for original in originals:
            # A restored tree has the pids and process group it had: this kills it, or
            # the original where a dump failed.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(original.pid, signal.SIGKILL)
            original.wait()
            reap(original.pid)
        run(["rm", "-rf", "--one-file-system", str(folder)], check=False)
    return FloorTimes(checkpoint=t1 - t0, restore=t2 - t1, answer=t3 - t2)


def images(folder: Path, tree: Tree) -> Path:
    return folder / f"images-{tree.name}"


def start(root: Path, tree: Tree) -> subprocess.Popen[bytes]:
    """tree chrooted to root, in a session of its own with no terminal (CRIU then needs no
    --shell-job), its output in /<name>.log there."""
    command = ["sh", "-c", f'exec "$@" >>/{tree.name}.log 2>&1', tree.name, *tree.argv]
    return subprocess.Popen(
        ["chroot", str(root), *command],
        env={"PATH": PATH, **tree.environment},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def criu(folder: Path, tree: Tree, action: str, *args: str) -> None:
    where = images(folder, tree)
    try:
        run([CRIU, action, *args, "-D", str(where), "-o", f"{action}.log", *CRIU_OPTIONS])
    except CommandError as err:
        log = (where / f"{action}.log").read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"criu {action} of {tree.name}: {err}\n" + "\n".join(log)) from err


def reap(group: int) -> None:
    """Wait until no process of the group is left; orphaned, they are this process's
    children (it is their subreaper)."""
    deadline = time.monotonic() + WAIT_S
    while members := group_members(group):
        for pid in members:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {members} of group {group} are still there")
        time.sleep(0.001)  # a member not (yet) this process's child: init reaps it


def group_members(group: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(stat[2]) == group:  # stat's fifth field: the process group
            found.append(int(entry.name))
    return found


def wait_answering(port: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while not pulse_answers("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"pulse on port {port} did not answer in {WAIT_S:.0f}s")
        time.sleep(0.005)


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True, help="a free port for pulse")
    parser.add_argument("--scratch", required=True, help="a directory for the run's files")
    parser.add_argument("--services", required=True, help="RepositoryServices as JSON")
    args = parser.parse_args(argv)
    services = RepositoryServices.model_validate_json(args.services)
    become_subreaper()
    times = bare_criu_floor(trees(services, args.port), pulse_rootfs(), args.port, args.scratch)
    result: dict[str, Any] = asdict(times)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
