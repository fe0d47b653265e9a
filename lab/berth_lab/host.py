"""A running host of the lab."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from berth_common.process import run
from berth_lab.plan import HostPlan


class LabError(RuntimeError):
    """The lab could not be brought up, or is not up."""


@dataclass
class LabHost:
    """A running host of the lab: where it is and how to run commands inside it."""

    plan: HostPlan
    holder_pid: int
    agent_pid: int | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def address(self) -> str:
        return str(self.plan.address)

    def crash_agent_at(self, point: str) -> None:
        """Make this host's agent (fault injection on) exit as if killed at point."""
        (self.plan.datastore_mount / "crash-at").write_text(point)

    def nsenter(self) -> list[str]:
        """The argv prefix that runs a command inside this host's namespaces: mounts,
        network and time (its own uptime)."""
        return ["nsenter", "-t", str(self.holder_pid), "-m", "-n", "-T", "--"]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: bytes | None = None,
        timeout: float | None = 120,
    ) -> subprocess.CompletedProcess[bytes]:
        return run([*self.nsenter(), *argv], check=check, input=input, timeout=timeout)

    def spawn(
        self, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside the host, detached from the caller's session;
        env: variables added to the caller's."""
        with log_path.open("ab") as log_file:
            return subprocess.Popen(
                [*self.nsenter(), *argv],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
