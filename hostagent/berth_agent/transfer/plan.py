"""What a transfer sends (pure): the blocks, grouped into runs, and why."""

from __future__ import annotations

from dataclasses import dataclass

from berth_agent.transfer.extents import Extent, Range, block_runs, changed_ranges, to_blocks

RUN_BLOCKS = 16  # blocks per frame: 1 MiB with 64 KiB blocks


@dataclass(frozen=True)
class TransferPlan:
    mode: str  # full | delta
    size: int
    block_size: int
    runs: tuple[tuple[int, int], ...]  # (first block, count)

    @property
    def bytes_planned(self) -> int:
        return sum(count for _, count in self.runs) * self.block_size


def plan_full(size: int, allocated: list[Range], block_size: int) -> TransferPlan:
    blocks = to_blocks(allocated, block_size, size)
    return TransferPlan("full", size, block_size, tuple(block_runs(blocks, RUN_BLOCKS)))


def plan_delta_from_extents(
    size: int, image: list[Extent], base: list[Extent], block_size: int
) -> TransferPlan:
    data, holes = changed_ranges(image, base)
    blocks = to_blocks(data + holes, block_size, size)
    return TransferPlan("delta", size, block_size, tuple(block_runs(blocks, RUN_BLOCKS)))


def plan_delta_from_blocks(size: int, changed: list[int], block_size: int) -> TransferPlan:
    return TransferPlan("delta", size, block_size, tuple(block_runs(changed, RUN_BLOCKS)))
