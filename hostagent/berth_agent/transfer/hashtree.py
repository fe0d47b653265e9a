"""A hash per fixed block of an image, kept beside each base on both sides.

The image's digest is a hash over the list of block hashes, so after a delta the new
digest is recomputed from the changed blocks only: verifying costs what changed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

BLOCK_SIZE = 64 * 1024
DIGEST_SIZE = 16


def block_hash(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


ZERO_BLOCK = bytes(BLOCK_SIZE)
ZERO_HASH = block_hash(ZERO_BLOCK)


class BlockHashes:
    def __init__(self, size: int, digests: bytearray, block_size: int = BLOCK_SIZE) -> None:
        if size % block_size:
            raise ValueError(f"image size {size} is not a multiple of {block_size}")
        if len(digests) != size // block_size * DIGEST_SIZE:
            raise ValueError("hash list does not match the image size")
        self.size, self.block_size, self._digests = size, block_size, digests

    @classmethod
    def of_zeros(cls, size: int, block_size: int = BLOCK_SIZE) -> BlockHashes:
        return cls(size, bytearray(ZERO_HASH * (size // block_size)), block_size)

    @property
    def blocks(self) -> int:
        return self.size // self.block_size

    def get(self, block: int) -> bytes:
        return bytes(self._digests[block * DIGEST_SIZE : (block + 1) * DIGEST_SIZE])

    def set(self, block: int, digest: bytes) -> None:
        self._digests[block * DIGEST_SIZE : (block + 1) * DIGEST_SIZE] = digest

    def root(self) -> str:
        h = hashlib.blake2b(digest_size=32)
        h.update(f"berth-image-v1:{self.size}:{self.block_size}:".encode())
        h.update(self._digests)
        return h.hexdigest()

    def copy(self) -> BlockHashes:
        return BlockHashes(self.size, bytearray(self._digests), self.block_size)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(self._digests)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, size: int, block_size: int = BLOCK_SIZE) -> BlockHashes:
        return cls(size, bytearray(path.read_bytes()), block_size)
