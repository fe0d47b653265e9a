"""LUKS encryption of repository images (needs dm-crypt on the host).

The key arrives with each request and goes to cryptsetup on stdin only: it is never
written to disk, put in argv, logged or echoed in an error.
"""

from __future__ import annotations

from pathlib import Path

from berth_agent.errors import Refusal, Unsupported
from berth_agent.store.mounts import dm_crypt_available
from berth_common.process import CommandError, run


def mapper_name(guid: str) -> str:
    return f"berth-{guid}"


def require_dm_crypt() -> None:
    if not dm_crypt_available():
        raise Unsupported(
            "this host has no device-mapper/dm-crypt (kernel without CONFIG_DM_CRYPT or "
            "module not loaded), so encrypted repositories cannot be created or opened here"
        )


def _cryptsetup(argv: list[str], key: bytes) -> None:
    try:
        run(["cryptsetup", *argv, "--key-file", "-"], input=key)
    except CommandError as err:
        # stderr of cryptsetup never contains the key; argv does not either.
        raise Refusal(f"cryptsetup {argv[0]} failed: {err.stderr}") from None


def format_image(image: Path, key: bytes) -> None:
    require_dm_crypt()
    _cryptsetup(["luksFormat", "--batch-mode", "--type", "luks2", str(image)], key)


def open_image(image: Path, guid: str, key: bytes) -> Path:
    require_dm_crypt()
    device = Path("/dev/mapper") / mapper_name(guid)
    if not device.exists():
        _cryptsetup(["open", str(image), mapper_name(guid)], key)
    return device


def close_image(guid: str) -> None:
    if (Path("/dev/mapper") / mapper_name(guid)).exists():
        run(["cryptsetup", "close", mapper_name(guid)])
