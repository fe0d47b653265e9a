"""The transfer stream's framing (pure).

A frame carries a run of consecutive blocks: a header, one hash per block (the same
blake2b the hash tree keeps, so a checked frame updates the tree for free), then the
blocks' bytes, raw or zstd-compressed. A ZERO frame carries no bytes: the receiver
punches a hole.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import zstandard

from berth_agent.transfer.hashtree import DIGEST_SIZE, ZERO_HASH, block_hash

RAW, ZSTD, ZERO = 1, 2, 3
_HEADER = struct.Struct(">BQII")  # kind, first block, block count, payload length
MAX_PAYLOAD = 64 * 2**20


class FrameError(ValueError):
    """A frame that is malformed or whose blocks do not match their hashes."""


@dataclass(frozen=True)
class Frame:
    kind: int
    first_block: int
    count: int
    digests: bytes  # count * DIGEST_SIZE; empty for ZERO
    payload: bytes


def encode(
    first_block: int,
    data: bytes,
    block_size: int,
    compressor: zstandard.ZstdCompressor | None = None,
) -> tuple[bytes, bytes]:
    """(frame bytes, concatenated block digests) for a run of blocks held in data."""
    count = len(data) // block_size
    view = memoryview(data)
    digests = b"".join(
        block_hash(view[i * block_size : (i + 1) * block_size]) for i in range(count)
    )
    if compressor is not None:
        payload, kind = compressor.compress(data), ZSTD
        if len(payload) >= len(data):
            payload, kind = data, RAW
    else:
        payload, kind = data, RAW
    return _HEADER.pack(kind, first_block, count, len(payload)) + digests + payload, digests


def encode_zero(first_block: int, count: int) -> bytes:
    return _HEADER.pack(ZERO, first_block, count, 0)


class Decoder:
    """Feed bytes as they arrive; iterate over complete frames, verified."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._buf = bytearray()
        self._decompressor = zstandard.ZstdDecompressor()

    def feed(self, chunk: bytes) -> Iterator[tuple[Frame, bytes]]:
        """Yields (frame, block data); block data is empty for ZERO frames."""
        self._buf += chunk
        while len(self._buf) >= _HEADER.size:
            kind, first, count, length = _HEADER.unpack_from(self._buf, 0)
            if kind not in (RAW, ZSTD, ZERO) or length > MAX_PAYLOAD or count == 0:
                raise FrameError(f"bad frame header (kind {kind}, {count} blocks, {length} bytes)")
            digest_len = 0 if kind == ZERO else count * DIGEST_SIZE
            total = _HEADER.size + digest_len + length
            if len(self._buf) < total:
                return
            digests = bytes(self._buf[_HEADER.size : _HEADER.size + digest_len])
            payload = bytes(self._buf[_HEADER.size + digest_len : total])
            del self._buf[:total]
            frame = Frame(kind, first, count, digests, payload)
            yield frame, self._verified_data(frame)

    def pending(self) -> int:
        """Bytes of an incomplete frame at the end of the stream (a truncated stream)."""
        return len(self._buf)

    def _verified_data(self, frame: Frame) -> bytes:
        if frame.kind == ZERO:
            return b""
        try:
            data = (
                self._decompressor.decompress(
                    frame.payload, max_output_size=frame.count * self.block_size
                )
                if frame.kind == ZSTD
                else frame.payload
            )
        except zstandard.ZstdError as err:
            raise FrameError(f"frame at block {frame.first_block}: bad zstd data: {err}") from err
        if len(data) != frame.count * self.block_size:
            raise FrameError(
                f"frame at block {frame.first_block}: {len(data)} bytes for {frame.count} blocks"
            )
        view = memoryview(data)
        bs = self.block_size
        for i in range(frame.count):
            if (
                block_hash(view[i * bs : (i + 1) * bs])
                != frame.digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]
            ):
                raise FrameError(f"block {frame.first_block + i}: checksum mismatch")
        return data


def zero_digests(count: int) -> bytes:
    return ZERO_HASH * count
