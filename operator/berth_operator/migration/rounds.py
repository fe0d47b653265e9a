"""When to stop the bulk rounds and cut over (pure).

P.Haul's rule, made patient with bursts: at most 8 rounds; stop when a round is small
enough that sending it during the freeze is cheap, or when two rounds in a row did not
shrink (the app writes as fast as we send, so more rounds would not help). One round
that grows is a burst of writes more often than a steady writer: giving up there sent a
500 MiB burst in the freeze (bench/downtime_bench.py, 1g_500m), where one more round
would have carried it while the application ran.
"""

from __future__ import annotations

MAX_ROUNDS = 8
SMALL_ROUND = 8 * 2**20  # bytes: a final delta this size costs well under the budget


def should_cut_over(
    rounds: list[int], small: int = SMALL_ROUND, max_rounds: int = MAX_ROUNDS
) -> bool:
    """Given the bytes sent by each bulk round so far, is it time to freeze?"""
    if not rounds:
        return False
    if len(rounds) >= max_rounds or rounds[-1] <= small:
        return True
    return len(rounds) >= 3 and rounds[-1] >= rounds[-2] >= rounds[-3]
