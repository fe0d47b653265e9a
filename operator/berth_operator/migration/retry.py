"""After a failed or rolled-back migration: when to try again, and when to stop (pure).

Four attempts per generation of the spec: after the first failure the next waits 15 s,
then 60 s, then 240 s; long enough for a machine that was briefly unreachable to come
back, short enough that a person who fixed the cause sees the move happen. The fourth
failure stalls the placement (MigrationFailed) until its spec changes: a fifth identical
failure would only repeat the downtime of a freeze and a rollback. A new generation (any
spec edit) starts counting again. The state lives in status.retry, so the waits survive
an operator restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from berth_api.v1alpha1.placement_types import RetryState

BACKOFF = (15.0, 60.0, 240.0)


@dataclass(frozen=True)
class RetryPolicy:
    backoff: tuple[float, ...] = BACKOFF

    @property
    def limit(self) -> int:
        """Attempts in all: the first, and one after each wait."""
        return len(self.backoff) + 1

    def after_failure(
        self, previous: RetryState | None, generation: int, reason: str | None, now: float
    ) -> RetryState:
        """The retry state once a migration of `generation` has failed at `now`."""
        same = previous is not None and previous.generation == generation
        attempts = previous.attempts + 1 if previous is not None and same else 1
        wait = self.backoff[min(attempts, len(self.backoff)) - 1]  # unused once exhausted
        return RetryState(
            generation=generation, attempts=attempts, reason=reason, not_before=now + wait
        )


@dataclass(frozen=True)
class RetryView:
    """What decide() needs of the retry state: how many attempts of this generation
    failed, the last reason, and how long until the next may start."""

    attempts: int
    limit: int
    reason: str | None
    wait_seconds: float

    @property
    def exhausted(self) -> bool:
        return self.attempts >= self.limit


def retry_view(
    retry: RetryState | None, generation: int, policy: RetryPolicy, now: float
) -> RetryView | None:
    """None when nothing failed for this generation."""
    if retry is None or retry.generation != generation:
        return None
    return RetryView(
        attempts=retry.attempts,
        limit=policy.limit,
        reason=retry.reason,
        wait_seconds=max(0.0, retry.not_before - now),
    )
