"""Reading the kernel's view of mounts and loop devices."""

from __future__ import annotations

from pathlib import Path


def mount_source(path: Path) -> str | None:
    """The device mounted exactly at path, or None."""
    target = str(path)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if fields[4] == target:
            return right.split()[1]
    return None


def mount_points_of(device: str) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[1] == device:
            points.append(left.split()[4])
    return points


def loops_backed_by(image: Path) -> list[str]:
    """Loop devices whose backing file is image (as this mount namespace names it)."""
    devices = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            name = backing.read_text().strip()
        except OSError:
            continue
        if name.removesuffix(" (deleted)") == str(image):
            devices.append("/dev/" + backing.parent.parent.name)
    return devices


def dm_crypt_available() -> bool:
    """dm-crypt usable: the device-mapper control node and the crypt target are present."""
    if not Path("/dev/mapper/control").exists():
        return False
    if Path("/sys/module/dm_crypt").exists():
        return True
    targets = Path("/proc/misc").read_text() if Path("/proc/misc").exists() else ""
    return "device-mapper" in targets and Path("/lib/modules").exists()
