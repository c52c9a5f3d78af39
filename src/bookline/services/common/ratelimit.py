"""Rate limits with the ``limits`` library: in this process's memory on one machine, in Redis
(``BOOKLINE_REDIS_URL``) when replicas must share them. A limit that is reached answers 429
``rate_limited`` with ``Retry-After``.

Limits are named (``bookings_per_customer``, ``failed_auth_per_address`` ...) and read from the
settings of the same name as strings such as ``30/minute``.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from bookline.config import Settings
from bookline.domain.errors import RateLimited

RULES = ("bookings_per_customer", "bookings_per_address", "failed_auth_per_address", "lookups_per_address")


def _storage(settings: Settings) -> Storage:
    if not settings.redis_url:
        return MemoryStorage()
    # limits speaks asyncio to Redis through coredis under the async+ scheme
    url = settings.redis_url
    return RedisStorage(url if url.startswith("async+") else f"async+{url}", key_prefix="bookline")


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(_storage(settings))
        self._items = {name: parse(getattr(settings, f"rate_limit_{name}")) for name in RULES}

    def window_s(self, rule: str) -> float:
        """How long one event counts against ``rule``."""
        return float(self._items[rule].get_expiry())

    async def hit(self, rule: str, key: str) -> None:
        """Count one event against ``rule`` for ``key``; 429 when the limit was already reached."""
        item = self._items[rule]
        if not await self._limiter.hit(item, rule, key):
            raise await self._refusal(rule, key)

    async def check(self, rule: str, key: str) -> None:
        """429 if ``key`` already reached ``rule``, without counting anything."""
        item = self._items[rule]
        if not await self._limiter.test(item, rule, key):
            raise await self._refusal(rule, key)

    async def _refusal(self, rule: str, key: str) -> RateLimited:
        reset_at, _remaining = await self._limiter.get_window_stats(self._items[rule], rule, key)
        retry_after = max(1, math.ceil(reset_at - time.time()))
        return RateLimited(
            f"too many requests ({rule.replace('_', ' ')}); retry after {retry_after} s", retry_after_s=retry_after
        )
