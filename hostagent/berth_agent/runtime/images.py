"""Images built on the host, since no registry is reachable: busybox and pulse from the
host's busybox, PostgreSQL and Redis from Debian's packages."""

from __future__ import annotations

import io
import logging
import subprocess
import tarfile
from collections.abc import Callable

import docker

from berth_agent.apps import clocks, postgres, pulse, redis
from berth_agent.errors import InvalidRequest
from berth_agent.runtime.debian_images import import_image

log = logging.getLogger("berth.agent.images")

BUSYBOX = "/bin/busybox"  # Debian's busybox-static: one static binary, no libraries
BUSYBOX_IMAGE = "berth/busybox:1"


def _add_file(tar: tarfile.TarFile, path: str, data: bytes, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(path)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, path: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(path)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def busybox_rootfs(extra_files: dict[str, bytes] | None = None) -> bytes:
    """A tar of a minimal root filesystem: busybox, its applet links, and extra files."""
    applets = subprocess.run(
        [BUSYBOX, "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in (
            "bin",
            "sbin",
            "usr",
            "usr/bin",
            "usr/sbin",
            "etc",
            "proc",
            "sys",
            "dev",
            "run",
            "var",
            "root",
        ):
            _add_dir(tar, directory)
        _add_dir(tar, "tmp", 0o1777)
        with open(BUSYBOX, "rb") as f:
            _add_file(tar, "bin/busybox", f.read())
        for applet in applets:
            if applet == "bin/busybox":
                continue
            link = tarfile.TarInfo(applet)
            link.type, link.linkname = tarfile.SYMTYPE, "/bin/busybox"
            tar.addfile(link)
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        _add_file(tar, "etc/group", b"root:x:0:\n", 0o644)
        for path, data in (extra_files or {}).items():
            _add_file(tar, path.lstrip("/"), data)
    return buf.getvalue()


def _import(client: docker.DockerClient, image: str, rootfs: bytes) -> None:
    repository, tag = image.rsplit(":", 1)
    client.api.import_image_from_data(rootfs, repository=repository, tag=tag)


def pulse_rootfs() -> bytes:
    """pulse's root filesystem: busybox with pulse's script and its answer."""
    return busybox_rootfs(
        {"usr/bin/pulse": pulse.SCRIPT.encode(), "usr/bin/pulse-answer": pulse.ANSWER.encode()}
    )


BUILDERS: dict[str, Callable[[docker.DockerClient], None]] = {
    BUSYBOX_IMAGE: lambda c: _import(c, BUSYBOX_IMAGE, busybox_rootfs()),
    pulse.IMAGE: lambda c: _import(c, pulse.IMAGE, pulse_rootfs()),
    postgres.IMAGE.image: lambda c: import_image(c, postgres.IMAGE),
    redis.IMAGE.image: lambda c: import_image(c, redis.IMAGE),
    clocks.IMAGE.image: lambda c: import_image(c, clocks.IMAGE),
}


def ensure_image(client: docker.DockerClient, image: str) -> None:
    """Make image present in the repository's dockerd, building it here if berth knows how."""
    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    builder = BUILDERS.get(image)
    if builder is None:
        raise InvalidRequest(
            f"image {image!r} is not in the repository and no registry is reachable; "
            f"berth builds these locally: {', '.join(sorted(BUILDERS))}"
        )
    builder(client)
    log.info("image built locally", extra={"image": image})
