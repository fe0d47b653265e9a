"""Reading a file's layout from the kernel: FIEMAP extents, SEEK_DATA/SEEK_HOLE ranges,
and cheap copies (FICLONE reflinks). Adapters over ioctls; the arithmetic is in extents."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from pathlib import Path

from berth_agent.transfer.extents import Extent, Range

FS_IOC_FIEMAP = 0xC020660B
FICLONE = 0x40049409
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
_HEADER = struct.Struct("=QQIIII")  # start, length, flags, mapped, count, reserved
_EXTENT = struct.Struct("=QQQQQIIII")  # logical, physical, length, 2 reserved, flags, 3 rsv
_BATCH = 4096  # extents per ioctl call


class LayoutUnsupported(OSError):
    """The filesystem cannot report extents or make reflinks."""


def fiemap(fd: int, sync: bool = True) -> list[Extent]:
    """Every extent of the open file; sync flushes dirty data first so none is delalloc."""
    extents: list[Extent] = []
    start = 0
    flags = FIEMAP_FLAG_SYNC if sync else 0
    while True:
        buf = bytearray(_HEADER.size + _BATCH * _EXTENT.size)
        _HEADER.pack_into(buf, 0, start, 0xFFFFFFFFFFFFFFFF - start, flags, 0, _BATCH, 0)
        try:
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
        except OSError as err:
            if err.errno in (errno.EOPNOTSUPP, errno.ENOTTY):
                raise LayoutUnsupported(err.errno, "FIEMAP not supported") from err
            raise
        mapped = _HEADER.unpack_from(buf, 0)[3]
        last = False
        for i in range(mapped):
            logical, physical, length, _, _, ext_flags, *_ = _EXTENT.unpack_from(
                buf, _HEADER.size + i * _EXTENT.size
            )
            extents.append(Extent(logical, physical, length, ext_flags))
            last = bool(ext_flags & FIEMAP_EXTENT_LAST)
        if mapped == 0 or last:
            return extents
        start = extents[-1].end
        flags = 0  # synced once is enough


def allocated_ranges(fd: int) -> list[Range]:
    """Data ranges of a sparse file via SEEK_DATA/SEEK_HOLE."""
    size = os.fstat(fd).st_size
    ranges: list[Range] = []
    offset = 0
    while offset < size:
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # no data after offset
                break
            raise
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        ranges.append((data, hole))
        offset = hole
    return ranges


def reflink(src: Path, dst: Path) -> None:
    """dst becomes a copy-on-write clone of src (instant, no data copied)."""
    with open(src, "rb") as s, open(dst, "wb") as d:
        try:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        except OSError as err:
            dst.unlink(missing_ok=True)
            if err.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY):
                raise LayoutUnsupported(err.errno, f"reflink {src} -> {dst}: {err}") from err
            raise


def supports_reflink(directory: Path) -> bool:
    probe_a, probe_b = directory / ".reflink-probe-a", directory / ".reflink-probe-b"
    try:
        probe_a.write_bytes(b"x" * 4096)
        reflink(probe_a, probe_b)
        return True
    except LayoutUnsupported:
        return False
    finally:
        probe_a.unlink(missing_ok=True)
        probe_b.unlink(missing_ok=True)


_libc = ctypes.CDLL(None, use_errno=True)
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate a range (reads as zeros afterwards), keeping the file size."""
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if _libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fallocate(PUNCH_HOLE): {os.strerror(err)}")
