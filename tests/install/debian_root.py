"""A bare Debian root filesystem to run berth's installer in, as on a fresh machine.

`debootstrap --variant=minbase` with python3 (a fresh machine has Python and nothing else
berth needs: no Go, no kubectl, no CRIU), cached as a tarball per suite so that later runs
unpack it in seconds. Each test gets a new copy, with /proc, /sys and /dev bound in, and
this site's network settings copied in as a machine here would have them (the TLS trust
anchors of /usr/local/share/ca-certificates, apt's Acquire settings, resolv.conf).

What the installer downloads or builds is kept between runs in caches bound into the
root (apt's archives per suite; pip's cache; berth's own /var/cache/berth with the Go
toolchain's .debs, CRIU's .debs and the built kube-apiserver, kubectl and helm; Go's
module and build caches), so only the first run is slow.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("BERTH_INSTALL_TEST_CACHE", "/var/cache/berth-install-test"))
# Bump when what goes into the base tarball changes.
RECIPE = "1"
BASE_PACKAGES = ("python3",)
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Suite:
    codename: str
    version: str


def _arch() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def debian_mirror(repo_root: Path) -> str:
    """The mirror the installer itself would use (hack/lib/debian.sh's choice)."""
    out = subprocess.run(
        ["bash", "-c", f'. "{repo_root}/hack/lib/debian.sh"; debian_mirror'],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def base_tarball(suite: Suite, mirror: str) -> Path:
    """The suite's minbase + python3 rootfs as a tarball, made once by debootstrap."""
    arch = _arch()
    key = hashlib.sha256(
        "\n".join([suite.codename, arch, RECIPE, *BASE_PACKAGES]).encode()
    ).hexdigest()[:12]
    tarball = CACHE / f"base-{suite.codename}-{arch}-{key}.tar"
    with _locked(CACHE / f"base-{suite.codename}.lock"):
        if tarball.exists():
            return tarball
        work = Path(tempfile.mkdtemp(prefix="debootstrap.", dir=CACHE))
        try:
            rootfs = work / "rootfs"
            log = CACHE / f"debootstrap-{suite.codename}.log"
            with log.open("w") as out:
                subprocess.run(
                    [
                        "debootstrap",
                        "--variant=minbase",
                        f"--arch={arch}",
                        f"--include={','.join(BASE_PACKAGES)}",
                        suite.codename,
                        str(rootfs),
                        mirror,
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=1800,
                )
            _unmount_below(work)  # debootstrap may leave /proc or /sys mounted on failure
            subprocess.run(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(work / "t.tar"), "."],
                check=True,
            )
            (work / "t.tar").rename(tarball)
        finally:
            _unmount_below(work)
            shutil.rmtree(work, ignore_errors=True)
    return tarball


def _mounts_below(path: Path) -> list[str]:
    prefix = f"{path.resolve()}/"
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(prefix) or target == prefix.rstrip("/"):
                found.append(target)
    return found


def _unmount_below(path: Path) -> None:
    for target in sorted(_mounts_below(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


@dataclass
class DebianRoot:
    """A fresh root filesystem of one suite, with the caches bound in; `run` chroots."""

    suite: Suite
    path: Path

    def run(
        self, script: str, *, timeout: float = 600, log: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`bash -c SCRIPT` inside the root, with a plain root login's environment."""
        argv = [
            "chroot",
            str(self.path),
            "/usr/bin/env",
            "-i",
            f"PATH={SERVICE_PATH}",
            "HOME=/root",
            "LANG=C.UTF-8",
            "/bin/bash",
            "-c",
            script,
        ]
        if log is None:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        with log.open("w") as out:
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout
            )
        return subprocess.CompletedProcess(argv, done.returncode, log.read_text(), "")


def _copy_site_settings(root: Path) -> None:
    """What any machine of this site has: its TLS trust anchors, apt's network settings
    (proxies, date checks), and the resolver."""
    anchors = Path("/usr/local/share/ca-certificates")
    if anchors.is_dir():
        shutil.copytree(anchors, root / anchors.relative_to("/"), dirs_exist_ok=True)
    conf_dir = Path("/etc/apt/apt.conf.d")
    for conf in sorted(conf_dir.glob("*")) if conf_dir.is_dir() else []:
        if conf.is_file() and "Acquire::" in conf.read_text(errors="replace"):
            shutil.copy2(conf, root / "etc/apt/apt.conf.d" / conf.name)
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf", follow_symlinks=True)


def _copy_checkout(repo_root: Path, dest: Path) -> None:
    """The checkout as a clone would have it: tracked and new files, no build output."""
    listed = subprocess.run(
        [
            "git",
            "-C",
            str(repo_root),
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
        capture_output=True,
        check=True,
    ).stdout
    dest.mkdir(parents=True)
    for name in filter(None, listed.decode().split("\0")):
        source = repo_root / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree, not yet committed
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def _bind(source: Path, target: Path, *extra: str) -> None:
    source.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", *extra, str(source), str(target)], check=True)


@contextlib.contextmanager
def debian_root(suite: Suite, repo_root: Path, checkout: str) -> Iterator[DebianRoot]:
    """A new root of SUITE with the checkout at CHECKOUT; unmounted and removed after."""
    mirror = debian_mirror(repo_root)
    tarball = base_tarball(suite, mirror)
    path = Path(tempfile.mkdtemp(prefix=f"berth-install-{suite.codename}.", dir="/var/tmp"))
    try:
        subprocess.run(["tar", "--numeric-owner", "-C", str(path), "-xf", str(tarball)], check=True)
        _copy_site_settings(path)
        # Services are not started inside a chroot (Debian's invoke-rc.d honours this).
        policy = path / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        _copy_checkout(repo_root, path / checkout.lstrip("/"))
        subprocess.run(["mount", "-t", "proc", "proc", str(path / "proc")], check=True)
        subprocess.run(["mount", "-t", "sysfs", "sysfs", str(path / "sys")], check=True)
        _bind(Path("/dev"), path / "dev")
        _bind(Path("/dev/pts"), path / "dev/pts")
        shared = CACHE / "shared"
        caches: Sequence[tuple[Path, str]] = (
            (CACHE / suite.codename / "apt-archives", "var/cache/apt/archives"),
            (shared / "berth", "var/cache/berth"),
            (shared / "pip", "root/.cache/pip"),
            (shared / "go-build", "root/.cache/go-build"),
            (shared / "go-mod", "root/go/pkg/mod"),
        )
        for source, inside in caches:
            _bind(source, path / inside)
        yield DebianRoot(suite=suite, path=path)
    finally:
        _unmount_below(path)
        if _mounts_below(path):
            raise RuntimeError(f"{path} still has mounts: {_mounts_below(path)}")
        shutil.rmtree(path, ignore_errors=True)
