"""The delta finder for datastores without reflinks: a hash manifest over allocated
blocks, on a real sparse file (the test machine's /tmp need not be copy-on-write)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth_agent.transfer import layout
from berth_agent.transfer.hashtree import BLOCK_SIZE, ZERO_HASH, BlockHashes, block_hash
from berth_agent.transfer.sender import _changed_by_hashes

pytestmark = pytest.mark.unit


def hashes_of(path: Path, size: int) -> BlockHashes:
    hashes = BlockHashes.of_zeros(size)
    with open(path, "rb") as f:
        for block in range(size // BLOCK_SIZE):
            data = f.read(BLOCK_SIZE)
            if data.count(0) != len(data):
                hashes.set(block, block_hash(data))
    return hashes


def test_changed_blocks_by_hash_manifest(tmp_path: Path) -> None:
    size = 64 * BLOCK_SIZE
    image = tmp_path / "image"
    with open(image, "wb") as f:
        f.truncate(size)
        f.seek(3 * BLOCK_SIZE)
        f.write(os.urandom(2 * BLOCK_SIZE))
        f.seek(40 * BLOCK_SIZE)
        f.write(os.urandom(BLOCK_SIZE))
    base = hashes_of(image, size)
    assert base.get(0) == ZERO_HASH
    with open(image, "r+b") as f:
        f.seek(4 * BLOCK_SIZE + 10)
        f.write(b"changed")
        f.seek(50 * BLOCK_SIZE)
        f.write(b"new data")
    fd = os.open(image, os.O_RDWR)
    try:
        layout.punch_hole(fd, 40 * BLOCK_SIZE, BLOCK_SIZE)
        assert _changed_by_hashes(fd, base) == [4, 40, 50]
        ranges = layout.allocated_ranges(fd)
    finally:
        os.close(fd)
    assert ranges and all(start < end for start, end in ranges)
