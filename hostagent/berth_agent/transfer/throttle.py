"""A token bucket for the bandwidth limit (pure: the caller sleeps)."""

from __future__ import annotations


class Throttle:
    def __init__(self, bytes_per_second: float | None, burst: float | None = None) -> None:
        self.rate = bytes_per_second
        self.burst = burst if burst is not None else (bytes_per_second or 0) / 10
        self._tokens = self.burst
        self._last: float | None = None

    def delay(self, nbytes: int, now: float) -> float:
        """Seconds to wait before sending nbytes more, given the time now."""
        if not self.rate:
            return 0.0
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= nbytes
        return max(0.0, -self._tokens / self.rate)
