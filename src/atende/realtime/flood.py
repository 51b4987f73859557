"""A per-socket frame budget: a client flooding frames gets `error` events, not DB writes."""

from __future__ import annotations

import time

FRAMES_PER_SEC = 20.0  # far above any human agent; typing + sends + pings of a busy inbox
BURST_FRAMES = 40.0


class FrameBudget:
    """Token bucket refilled at FRAMES_PER_SEC, holding at most BURST_FRAMES."""

    def __init__(self, rate: float = FRAMES_PER_SEC, burst: float = BURST_FRAMES) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
