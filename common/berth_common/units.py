"""Units people type and read: bandwidth as bytes per second, sizes (pure)."""

from __future__ import annotations

import re

_RATE_UNITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}
_IMAGE_SIZE = re.compile(r"^([1-9][0-9]*)([MGT])$")
_IMAGE_UNITS = {"M": 2**20, "G": 2**30, "T": 2**40}


def parse_image_size(size: str) -> int:
    """A repository's size as the API writes it ('2G': M, G or T, binary) in bytes;
    ValueError if it is not one."""
    match = _IMAGE_SIZE.match(size)
    if not match:
        raise ValueError(f"size {size!r} is invalid: a whole number and M, G or T (e.g. 2G)")
    return int(match.group(1)) * _IMAGE_UNITS[match.group(2)]


def parse_rate(text: str) -> float:
    """'50M' -> 50e6 bytes per second; ValueError with a readable message otherwise."""
    number = text.rstrip("KMGkmg")
    unit = text[len(number) :].upper()
    try:
        value = float(number) * _RATE_UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(f"bandwidth {text!r}: bytes per second, e.g. 50M") from None
    if value <= 0:
        raise ValueError(f"bandwidth {text!r} must be positive")
    return value


def human_bytes(n: float | None, *, binary: bool = False) -> str:
    """12.3 MB (powers of 1000: what moved, how fast), or with binary 12.3 MiB (powers of
    1024: room on a disk, as `df -h` and repository sizes like 2G count it)."""
    if n is None:
        return "-"
    step, units = (1024, ("B", "KiB", "MiB", "GiB", "TiB")) if binary else (
        1000, ("B", "KB", "MB", "GB", "TB")
    )  # fmt: skip
    for unit in units:
        if abs(n) < step or unit == units[-1]:
            break
        n /= step
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
