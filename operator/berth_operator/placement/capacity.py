"""Whether a repository fits a Machine's `spec.capacityBytes` (pure).

capacityBytes caps what berth puts on a machine's datastore, below what its disk holds
(room kept for something else). A repository's image is sparse, so what counts is what
the images use (the agents' usedBytes at the last heartbeat); a created image is counted
at its full size, though, since it may fill up: a template larger than the cap can never
be created there, whatever else the machine holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from berth_common.units import human_bytes


def create_refusal(machine: str, capacity: int | None, size: int) -> str | None:
    """Why a repository of `size` bytes cannot be created on machine; None if it can."""
    if capacity is None or size <= capacity:
        return None
    return (
        f"template.size {human_bytes(size, binary=True)} exceeds machine {machine}'s "
        f"capacityBytes ({human_bytes(capacity, binary=True)})"
    )


def move_refusal(
    machine: str, capacity: int | None, held: Mapping[str, int], repository: str, used: int
) -> str | None:
    """Why a repository using `used` bytes cannot move onto machine, which holds `held`
    (bytes used by repository); None if it can. A copy of the same repository there
    (left by an earlier move) is replaced, so it does not count."""
    if capacity is None:
        return None
    others = sum(b for name, b in held.items() if name != repository)
    if others + used <= capacity:
        return None
    return (
        f"machine {machine} holds {human_bytes(others, binary=True)} of its capacityBytes "
        f"({human_bytes(capacity, binary=True)}); {repository} uses "
        f"{human_bytes(used, binary=True)}"
    )
