"""Images of Debian's own packages (PostgreSQL, Redis), built on the host: no registry is
reachable. One debootstrap of bookworm minbase with the packages makes a root filesystem,
cached as a tarball named after what went into it; each image is that tarball imported
into the repository's dockerd with its own command and environment (docker 20.10's
import sets no STOPSIGNAL: the service's stop_signal does).

debootstrap runs once per host and recipe (about 60 s and a 430 MB tarball for
PostgreSQL and Redis together); later repositories import the cached tarball (seconds).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from berth_agent.errors import Refusal

log = logging.getLogger("berth.agent.images")

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = Path("/var/cache/berth/image")  # shared with hack/image/base.sh
DEBOOTSTRAP = "/usr/sbin/debootstrap"
# Bump when the recipe below changes what ends up in the rootfs.
RECIPE = 1


@dataclass(frozen=True)
class RootfsRecipe:
    """What a root filesystem holds: Debian packages and a setup script run in it."""

    name: str
    packages: tuple[str, ...]
    files: tuple[tuple[str, str], ...] = ()  # (path, content) written executable

    def key(self, arch: str) -> str:
        text = "\n".join(
            [SUITE, arch, f"recipe={RECIPE}", *self.packages, *(p + c for p, c in self.files)]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DebianImage:
    """An image of a recipe's rootfs, with the config docker import gives it."""

    image: str
    recipe: RootfsRecipe
    changes: tuple[str, ...]  # what docker import takes: CMD, ENV, USER, VOLUME, ...


def _cache_dir() -> Path:
    return Path(os.environ.get("BERTH_IMAGE_CACHE") or DEFAULT_CACHE)


def _mirror() -> str:
    return os.environ.get("BERTH_DEBIAN_MIRROR") or DEFAULT_MIRROR


def _arch() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def rootfs_tarball(recipe: RootfsRecipe) -> Path:
    """The recipe's rootfs as a tarball in the cache, made by debootstrap if missing. One
    build at a time per cache: two agents of one machine (the lab) wait for each other."""
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    arch = _arch()
    tarball = cache / f"{recipe.name}-{SUITE}-{arch}-{recipe.key(arch)}.tar"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.exists():
            _build(recipe, tarball)
    return tarball


def _build(recipe: RootfsRecipe, tarball: Path) -> None:
    if not Path(DEBOOTSTRAP).exists():
        raise Refusal(f"{DEBOOTSTRAP} is missing (apt-get install debootstrap)")
    work = Path(tempfile.mkdtemp(prefix="work.", dir=tarball.parent))
    rootfs = work / "rootfs"
    started = time.monotonic()
    log.info(
        "debootstrap of an image's rootfs begins",
        extra={"recipe": recipe.name, "packages": list(recipe.packages)},
    )
    try:
        done = subprocess.run(
            [DEBOOTSTRAP, "--variant=minbase", f"--include={','.join(recipe.packages)}",
             SUITE, str(rootfs), _mirror()],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).splitlines()[-5:])
            raise Refusal(f"debootstrap of {recipe.name} failed: {tail}")
        _trim(rootfs)
        for path, content in recipe.files:
            target = rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o755)
        partial = work / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "--sort=name", "-C", str(rootfs), "-cf", str(partial), "."],
            check=True,
        )
        for old in tarball.parent.glob(f"{recipe.name}-{SUITE}-*.tar"):
            old.unlink()
        partial.replace(tarball)
    finally:
        _unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    log.info(
        "image rootfs cached",
        extra={
            "recipe": recipe.name,
            "tarball": str(tarball),
            "bytes": tarball.stat().st_size,
            "seconds": round(time.monotonic() - started, 1),
        },
    )


def _trim(rootfs: Path) -> None:
    """What a container never needs: downloaded packages, apt lists, manuals, the build
    machine's identity."""
    for pattern in (
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/*.bin",
        "var/lib/apt/lists/*",
        "usr/share/man/*",
        "usr/share/locale/*",
        "var/log/*.log",
        "etc/hostname",
        "etc/resolv.conf",
    ):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    (rootfs / "etc/machine-id").write_text("")


def _unmount_under(work: Path) -> None:
    """debootstrap mounts /proc and /sys in the target: never leave them behind."""
    prefix = f"{work}/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def import_image(client: docker.DockerClient, spec: DebianImage) -> None:
    """spec.image in the repository's dockerd, from the cached rootfs."""
    tarball = rootfs_tarball(spec.recipe)
    repository, tag = spec.image.rsplit(":", 1)
    client.api.import_image_from_file(
        str(tarball), repository=repository, tag=tag, changes=list(spec.changes)
    )
