"""One dockerd per repository, isolated from the host's Docker and from each other.

Each daemon has its own socket, exec-root and pidfile under <run-dir>/<guid>, and its
data-root inside the repository, so its containers, images, volumes and checkpoints all
travel with the image. An agent that restarts adopts daemons that are already running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from berth_agent.checkpoint import runc_shim
from berth_agent.checkpoint.criu import environment_with_criu
from berth_agent.checkpoint.runc import RuncCheckpointer
from berth_agent.errors import Refusal

log = logging.getLogger("berth.agent.dockerd")

DOCKERD = "/usr/sbin/dockerd"
# The Engine API version berth speaks: docker 20.10's, served by every later dockerd. A
# client that asks the daemon instead ("auto") costs a GET /version, for which dockerd
# runs `runc --version` and `docker-init --version`: 30 ms of a move's downtime per client.
API_VERSION = "1.41"


# What containerd (a child of dockerd) unpacks a checkpoint into for each restore; docker
# 20.10 never removes it, so each copy of the repository's memory would stay for good.
CHECKPOINT_COPY_GLOB = "ctrd-checkpoint*"


@dataclass(frozen=True)
class DaemonPaths:
    run_dir: Path  # <run-dir>/<guid>
    data_root: Path
    # The daemon's TMPDIR (on the datastore, not in RAM): where its restores leave their
    # checkpoint copies, removed after each restore and with the daemon.
    tmp_dir: Path
    # Where the agent keeps the `runc` dockerd runs (runc_shim), shared by all repositories.
    shim_dir: Path

    @property
    def containerd_root(self) -> Path:
        return self.tmp_dir / "containerd"

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "dockerd.pid"

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def runc_root(self) -> Path:
        # Where dockerd's containerd has runc keep its containers' state ("moby": the
        # containerd namespace dockerd uses).
        return self.exec_root / "runtime-runc" / "moby"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "dockerd.log"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


def _pid_is_dockerd_for(pid: int, paths: DaemonPaths) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and str(paths.socket).encode() in b" ".join(cmdline)


# dockerd's own remapping user: dockerd adds it, and its ranges in /etc/subuid and
# /etc/subgid, the first time it needs them. Hosts a repository moves between must map
# the same ids (the files in its image are owned by them).
USERNS_REMAP = "default"
_REMAPPED_ROOT = re.compile(r"^\d+\.\d+$")  # <data-root>/<uid>.<gid>


class RepositoryDaemon:
    def __init__(
        self, paths: DaemonPaths, dockerd: str = DOCKERD, *, user_namespace: bool = False
    ) -> None:
        self.paths = paths
        self.dockerd = dockerd
        self.user_namespace = user_namespace

    def pid(self) -> int | None:
        """The pid of this repository's running dockerd, from its pidfile."""
        try:
            pid = int(self.paths.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_is_dockerd_for(pid, self.paths) else None

    def running(self) -> bool:
        return self.pid() is not None

    def client(self, timeout: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.paths.url, version=API_VERSION, timeout=timeout)

    def checkpointer(self) -> RuncCheckpointer:
        return RuncCheckpointer(runc_root=self.paths.runc_root, data_root=self.graph_root())

    def graph_root(self) -> Path:
        """Where dockerd keeps containers, images and volumes: its data-root, or with a
        user namespace the data-root's <uid>.<gid> folder of the remapped root."""
        if not self.user_namespace:
            return self.paths.data_root
        found = [p for p in self.paths.data_root.iterdir() if _REMAPPED_ROOT.match(p.name)]
        if len(found) != 1:
            raise Refusal(
                f"no single remapped root in {self.paths.data_root}: {[p.name for p in found]}"
            )
        return found[0]

    def start(self, timeout: float = 30) -> int:
        """Start (or adopt) the daemon and wait until it answers."""
        existing = self.pid()
        if existing is not None:
            log.info("dockerd adopted", extra={"pid": existing, "socket": str(self.paths.socket)})
            self._wait_ready(existing, timeout)
            return existing
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        self.paths.data_root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.paths.tmp_dir, ignore_errors=True)  # a crashed daemon's
        self.paths.tmp_dir.mkdir(parents=True)
        self._keep_containerd_outside()
        argv = [
            self.dockerd,
            "--data-root",
            str(self.paths.data_root),
            "--exec-root",
            str(self.paths.exec_root),
            "--pidfile",
            str(self.paths.pidfile),
            "-H",
            self.paths.url,
            # No default bridge and no firewall rules: repositories get a network of
            # their own (see services), and two repositories never collide on docker0.
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--experimental",  # docker 20.10 needs it for checkpoint/restore
            "--log-driver",
            "json-file",
        ]
        if self.user_namespace:
            argv.append(f"--userns-remap={USERNS_REMAP}")
        log_file = self.paths.log_file.open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=self._environment(),
        )
        log_file.close()
        # Reap it when it exits while we run; after an agent restart init reaps it.
        threading.Thread(target=proc.wait, daemon=True).start()
        self._wait_ready(proc.pid, timeout)
        log.info("dockerd started", extra={"pid": proc.pid, "socket": str(self.paths.socket)})
        return proc.pid

    def _environment(self) -> dict[str, str]:
        """CRIU >= 4.2 and runc_shim first on PATH; TMPDIR where restores leave copies;
        the shim told when the containers run in a user namespace."""
        env = environment_with_criu()
        shim = runc_shim.install(self.paths.shim_dir)
        env = {**env, "PATH": f"{shim}:{env['PATH']}", "TMPDIR": str(self.paths.tmp_dir)}
        if self.user_namespace:
            env[runc_shim.USERNS_VARIABLE] = "1"
        return env

    def _keep_containerd_outside(self) -> None:
        """dockerd's own containerd keeps its root in <data-root>/containerd: its database
        and the content store every restore uploads the checkpoint into, only to delete
        it. None of it outlives the daemon, and written inside the repository it is slow
        (a loop device under btrfs) and sent with every move. So that folder is a link
        to the daemon's scratch folder on the host, made anew at each start (where the
        repository was made before, the folder it held is dropped)."""
        link = self.paths.data_root / "containerd"
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        self.paths.containerd_root.mkdir()
        link.symlink_to(self.paths.containerd_root)

    def _wait_ready(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists():
                raise Refusal(f"dockerd exited: {self._log_tail()}")
            if self.paths.socket.exists():
                with contextlib.suppress(Exception):
                    client = self.client(timeout=2)
                    try:
                        client.ping()
                        return
                    finally:
                        client.close()
            time.sleep(0.01)  # on a move's critical path: dockerd answers ~0.1 s after exec
        raise Refusal(f"dockerd did not answer within {timeout:.0f}s: {self._log_tail()}")

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.paths.log_file.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, wait for it to go, then SIGKILL; containers stop with it."""
        pid = self.pid()
        if pid is None:
            shutil.rmtree(self.paths.tmp_dir, ignore_errors=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_is_dockerd_for(pid, self.paths):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        log.info("dockerd stopped", extra={"pid": pid, "socket": str(self.paths.socket)})
        shutil.rmtree(self.paths.tmp_dir, ignore_errors=True)

    def remove_checkpoint_copies_later(self) -> None:
        """remove_checkpoint_copies() beside the caller: a large copy takes a while to
        remove, and a restore's caller is inside the repository's downtime. Not a daemon
        thread: a one-shot `berth-agent repo up` waits for it before exiting."""
        threading.Thread(target=self.remove_checkpoint_copies, daemon=False).start()

    def remove_checkpoint_copies(self) -> int:
        """Remove what restores left in the daemon's TMPDIR; returns how many. Once a
        restore has returned, CRIU has read its images: the copy serves nothing."""
        copies = list(self.paths.tmp_dir.glob(CHECKPOINT_COPY_GLOB))
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)
        if copies:
            log.info(
                "checkpoint copies removed",
                extra={"count": len(copies), "socket": str(self.paths.socket)},
            )
        return len(copies)
