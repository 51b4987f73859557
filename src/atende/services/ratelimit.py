"""Per-tenant send limits (seed 000: 100 a minute, 1,000 an hour), shared through Redis if set."""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from atende.config import Settings
from atende.errors import RateLimitExceeded

logger = logging.getLogger(__name__)


def make_storage(settings: Settings) -> Storage:
    """Counters shared by every instance through Redis when it is configured, else here."""
    if settings.redis_url:
        return RedisStorage(
            "async+" + settings.redis_url, implementation="redispy", wrap_exceptions=True
        )
    return MemoryStorage()


class SendLimiter:
    def __init__(self, settings: Settings) -> None:
        self._storage = make_storage(settings)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._storage_failing = False
        self._items: list[RateLimitItem] = [
            RateLimitItemPerMinute(settings.rate_limit_per_minute),
            RateLimitItemPerHour(settings.rate_limit_per_hour),
        ]

    async def hit(self, tenant_id: str) -> None:
        """Count one send, or raise RateLimitExceeded with seconds to wait.

        `hit` checks and counts in one step (a Lua script on Redis), so concurrent sends on
        several instances cannot all pass a check that only one of them should pass. A send
        refused by the hourly window has used one slot of the minute window: harmless, the
        hour is the binding limit then."""
        for item in self._items:
            if not await self._counted(item, tenant_id):
                raise RateLimitExceeded(
                    "Too many messages. Please wait.",
                    retry_after=await self._retry_after(item, tenant_id),
                )

    async def _counted(self, item: RateLimitItem, tenant_id: str) -> bool:
        """Count one send in `item`'s window. Fails open while Redis is unreachable: refusing
        every send would take the inbox down with Redis, and the gateways limit us anyway."""
        try:
            allowed = await self._limiter.hit(item, "send", tenant_id)
        except StorageError as exc:
            if not self._storage_failing:
                logger.warning("[REDIS] rate limit storage unreachable (%s); not limiting", exc)
            self._storage_failing = True
            return True
        self._storage_failing = False
        return allowed

    async def _retry_after(self, item: RateLimitItem, tenant_id: str) -> int:
        stats = await self._limiter.get_window_stats(item, "send", tenant_id)
        return max(1, math.ceil(stats.reset_time - time.time()))
