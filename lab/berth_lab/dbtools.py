"""The databases' own tools (psql, pgbench, pg_amcheck, redis-cli, redis-benchmark) run on
a lab host: from the same Debian root filesystem as berth's database images, unpacked
once and entered with chroot inside the host's namespaces, so the host (a bare machine)
needs none of them installed."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from berth_agent.apps import databases
from berth_agent.runtime.debian_images import rootfs_tarball
from berth_lab.host import LabHost

PG_BIN = databases.POSTGRES_BIN


def unpack_tools(dest: Path) -> Path:
    """The databases' root filesystem unpacked into dest (debootstrap first, if this
    machine has not made it yet); remove it with remove_tools."""
    tarball = rootfs_tarball(databases.RECIPE)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="fully_trusted")  # our own rootfs: links, devices
    return dest


def remove_tools(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)


@dataclass(frozen=True)
class DatabaseTools:
    host: LabHost
    rootfs: Path

    def chrooted(self, argv: Sequence[str]) -> list[str]:
        return ["chroot", str(self.rootfs), *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[bytes]:
        """argv inside the host (CommandError on a non-zero exit when check is set)."""
        return self.host.run(self.chrooted(argv), check=check, timeout=timeout)

    def output(self, argv: Sequence[str]) -> str:
        return self.run(argv).stdout.decode(errors="replace").strip()

    def spawn(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        return self.host.spawn(self.chrooted(argv), log)

    def psql(self, address: str, sql: str, port: int = 5432) -> str:
        """One statement's rows, unaligned without headers ('|' between columns)."""
        return self.output(
            [f"{PG_BIN}/psql", "-h", address, "-p", str(port), "-U", "postgres", "-XAtq",
             "-v", "ON_ERROR_STOP=1", "-c", sql]
        )  # fmt: skip

    def redis(self, address: str, *command: str, port: int = 6379) -> str:
        return self.output(["redis-cli", "-h", address, "-p", str(port), *command])
