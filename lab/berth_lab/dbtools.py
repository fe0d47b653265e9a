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

    def argv(self, argv: Sequence[str]) -> list[str]:
        return [*self.host.nsenter(), "chroot", str(self.rootfs), *argv]

    def run(self, argv: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """argv inside the host, its output as text; raises on a non-zero exit."""
        done = subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {done.returncode}: {done.stdout[-2000:]}"
                f"{done.stderr[-2000:]}"
            )
        return done

    def spawn(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                self.argv(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def psql(self, address: str, sql: str, port: int = 5432) -> str:
        """One statement's rows, unaligned without headers ('|' between columns)."""
        return self.run(
            [f"{PG_BIN}/psql", "-h", address, "-p", str(port), "-U", "postgres", "-XAtq",
             "-v", "ON_ERROR_STOP=1", "-c", sql]
        ).stdout.strip()  # fmt: skip

    def redis(self, address: str, *command: str, port: int = 6379) -> str:
        return self.run(["redis-cli", "-h", address, "-p", str(port), *command]).stdout.strip()
