"""Extent and delta arithmetic (pure).

A file's layout is a sorted list of extents mapping logical ranges to physical ones.
An image and a reflinked base share physical extents until the image is written; the
ranges where the image's mapping differs from the base's are exactly what changed, so
finding them costs what changed, not what the image holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# FIEMAP flags (linux/fiemap.h) that matter for deciding what to send.
FIEMAP_EXTENT_UNKNOWN = 0x00000002  # location not known yet
FIEMAP_EXTENT_DELALLOC = 0x00000004  # not allocated yet (dirty data)
FIEMAP_EXTENT_UNWRITTEN = 0x00000800  # allocated but reads as zeros
_UNSTABLE = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC


@dataclass(frozen=True, order=True)
class Extent:
    logical: int
    physical: int
    length: int
    flags: int = 0

    @property
    def end(self) -> int:
        return self.logical + self.length


Range = tuple[int, int]  # [start, end)


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, non-overlapping, adjacent ranges joined."""
    merged: list[Range] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def subtract_ranges(ranges: Sequence[Range], minus: Sequence[Range]) -> list[Range]:
    """ranges minus `minus`; both sorted and non-overlapping."""
    result: list[Range] = []
    j = 0
    for start, end in ranges:
        cursor = start
        while j < len(minus) and minus[j][1] <= cursor:
            j += 1
        k = j
        while k < len(minus) and minus[k][0] < end:
            m_start, m_end = minus[k]
            if m_start > cursor:
                result.append((cursor, m_start))
            cursor = max(cursor, m_end)
            k += 1
        if cursor < end:
            result.append((cursor, end))
    return result


def _shared(image: Sequence[Extent], base: Sequence[Extent]) -> list[Range]:
    """Logical ranges mapped to the same physical bytes in image and base."""
    shared: list[Range] = []
    j = 0
    for ext in image:
        if ext.flags & _UNSTABLE:
            continue
        while j < len(base) and base[j].end <= ext.logical:
            j += 1
        k = j
        while k < len(base) and base[k].logical < ext.end:
            b = base[k]
            # Same mapping: both translate logical->physical by the same offset.
            if not b.flags & _UNSTABLE and b.physical - b.logical == ext.physical - ext.logical:
                start, end = max(ext.logical, b.logical), min(ext.end, b.end)
                if start < end:
                    shared.append((start, end))
            k += 1
    return merge_ranges(shared)


def changed_ranges(
    image: Sequence[Extent], base: Sequence[Extent]
) -> tuple[list[Range], list[Range]]:
    """(data, holes): ranges whose content may differ from the base, and ranges that
    the base holds but the image no longer does (to be zeroed on the receiver)."""
    image = sorted(image)
    base = sorted(base)
    image_ranges = merge_ranges((e.logical, e.end) for e in image)
    base_ranges = merge_ranges((e.logical, e.end) for e in base)
    data = subtract_ranges(image_ranges, _shared(image, base))
    holes = subtract_ranges(base_ranges, image_ranges)
    return data, holes


def to_blocks(ranges: Iterable[Range], block_size: int, size: int) -> list[int]:
    """Indices of the fixed-size blocks that the ranges touch, within an image of size."""
    blocks: list[int] = []
    last = -1
    limit = (size + block_size - 1) // block_size
    for start, end in merge_ranges(ranges):
        first_block = max(start // block_size, last + 1)
        end_block = min((end + block_size - 1) // block_size, limit)
        blocks.extend(range(first_block, end_block))
        if end_block > first_block:
            last = end_block - 1
    return blocks


def block_runs(blocks: Sequence[int], max_run: int) -> list[tuple[int, int]]:
    """Consecutive block indices grouped into (first, count) runs of at most max_run."""
    runs: list[tuple[int, int]] = []
    for block in blocks:
        if runs and runs[-1][0] + runs[-1][1] == block and runs[-1][1] < max_run:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((block, 1))
    return runs
