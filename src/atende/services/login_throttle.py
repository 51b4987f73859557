"""Login throttling: failures counted per account and per client address, shared through Redis.

Past `login_failures_per_account` failures for one e-mail, or `login_failures_per_ip` from one
address, within `login_failure_window_secs`, logins are refused with 429 and `retry_after`
before any password is checked (so a guesser can not even spend our CPU). A success clears the
account's count; the address's count runs out by itself. E-mails are hashed in the keys: the
counters are not a list of who uses the product.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from atende.config import Settings
from atende.errors import RateLimitExceeded
from atende.services.ratelimit import make_storage

logger = logging.getLogger(__name__)


def _account_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class LoginThrottle:
    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(make_storage(settings))
        window = settings.login_failure_window_secs
        self._per_account = RateLimitItemPerSecond(settings.login_failures_per_account, window)
        self._per_ip = RateLimitItemPerSecond(settings.login_failures_per_ip, window)

    def _keys(self, email: str, ip: str | None) -> list[tuple[RateLimitItem, str, str]]:
        keys: list[tuple[RateLimitItem, str, str]] = [
            (self._per_account, "login-account", _account_key(email))
        ]
        if ip:
            keys.append((self._per_ip, "login-ip", ip))
        return keys

    async def check(self, email: str, ip: str | None) -> None:
        """Raise RateLimitExceeded while either count is used up."""
        for item, scope, key in self._keys(email, ip):
            try:
                allowed = await self._limiter.test(item, scope, key)
                if allowed:
                    continue
                stats = await self._limiter.get_window_stats(item, scope, key)
            except StorageError as exc:
                logger.warning("[REDIS] login throttle unreachable (%s); not limiting", exc)
                return
            raise RateLimitExceeded(
                "Too many failed logins. Please wait and try again.",
                retry_after=max(1, math.ceil(stats.reset_time - time.time())),
            )

    async def failed(self, email: str, ip: str | None) -> None:
        for item, scope, key in self._keys(email, ip):
            try:
                await self._limiter.hit(item, scope, key)
            except StorageError as exc:
                logger.warning("[REDIS] login throttle unreachable (%s); not counting", exc)

    async def succeeded(self, email: str) -> None:
        try:
            await self._limiter.clear(self._per_account, "login-account", _account_key(email))
        except StorageError as exc:
            logger.warning("[REDIS] login throttle unreachable (%s)", exc)
