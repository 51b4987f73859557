"""Per-tenant send limits (seed 000: 100 a minute, 1,000 an hour), shared through Redis if set."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from atende.config import Settings
from atende.errors import RateLimitExceeded


class SendLimiter:
    def __init__(self, settings: Settings) -> None:
        self._storage: Storage = (
            RedisStorage("async+" + settings.redis_url, implementation="redispy")
            if settings.redis_url
            else MemoryStorage()
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._items: list[RateLimitItem] = [
            RateLimitItemPerMinute(settings.rate_limit_per_minute),
            RateLimitItemPerHour(settings.rate_limit_per_hour),
        ]

    async def hit(self, tenant_id: str) -> None:
        """Count one send, or raise RateLimitExceeded with seconds to wait."""
        for item in self._items:
            if not await self._limiter.test(item, "send", tenant_id):
                raise RateLimitExceeded(
                    "Too many messages. Please wait.",
                    retry_after=await self._retry_after(item, tenant_id),
                )
        for item in self._items:
            await self._limiter.hit(item, "send", tenant_id)

    async def _retry_after(self, item: RateLimitItem, tenant_id: str) -> int:
        stats = await self._limiter.get_window_stats(item, "send", tenant_id)
        return max(1, math.ceil(stats.reset_time - time.time()))
