"""CRIU through runc, beside the repository's dockerd: a checkpoint written once, straight
into the container's checkpoint folder in the repository.

Docker 20.10's checkpoint API has containerd pause the container, dump it into a folder
of its own, pack that into its content store (inside the repository: dockerd's
containerd keeps its root in the data-root) and unpack it again into docker's checkpoint
folder: 0.30 s for pulse, where `runc checkpoint` takes 0.13 s, and the packed copy is
sent in the final delta. The folder runc writes is the one docker's API would have
written: `docker start --checkpoint NAME` restores from it, `docker checkpoint ls` lists
it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from berth_agent.checkpoint.criu import environment_with_criu, log_excerpt
from berth_agent.errors import Refusal

RUNC = "/usr/sbin/runc"  # docker's own runtime: the state under runc_root is its
CHECKPOINT_TIMEOUT = 120.0  # seconds: a dump writes the container's whole memory


@dataclass(frozen=True)
class RuncCheckpointer:
    """Checkpoints the containers of one dockerd with the runc that runs them."""

    runc_root: Path  # <exec-root>/runtime-runc/<containerd namespace>: runc's state
    data_root: Path  # dockerd's data-root: containers/<id>/checkpoints/<name>
    runc: str = RUNC

    def image_dir(self, container_id: str, name: str) -> Path:
        return self.data_root / "containers" / container_id / "checkpoints" / name

    def kill_argv(self, container_id: str) -> list[str]:
        """The command that kills the container's processes at once."""
        return [self.runc, "--root", str(self.runc_root), "kill", container_id, "KILL"]

    def resume_argv(self, container_id: str) -> list[str]:
        """The command that thaws the container's processes (its freezer cgroup)."""
        return [self.runc, "--root", str(self.runc_root), "resume", container_id]

    def checkpoint(self, container_id: str, name: str) -> None:
        """Dump the container's processes into its checkpoint NAME and kill them (CRIU's
        images, and its dump.log, in one folder). The dump reads /etc/criu/runc.conf,
        as a dump through docker would."""
        images = self.image_dir(container_id, name)
        images.mkdir(parents=True, exist_ok=True)
        argv = [
            self.runc,
            "--root",
            str(self.runc_root),
            "checkpoint",
            "--image-path",
            str(images),
            "--work-path",
            str(images),
            container_id,
        ]
        try:
            subprocess.run(
                argv,
                env=environment_with_criu(),
                capture_output=True,
                text=True,
                check=True,
                timeout=CHECKPOINT_TIMEOUT,
            )
        except subprocess.CalledProcessError as err:
            raise Refusal(
                f"runc checkpoint failed: {err.stderr.strip() or err.returncode}"
                f"{log_excerpt(images / 'dump.log')}"
            ) from err
        except subprocess.TimeoutExpired as err:
            raise Refusal(f"runc checkpoint took over {CHECKPOINT_TIMEOUT:.0f}s") from err
