"""Per-key rate limits, through the `limits` library: a moving window in this process's memory, or in Redis
when REDIS_URL is set, so every gateway replica counts against the same window."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


class RateLimiter:
    def __init__(self, name: str, per_minute: int, redis_url: str | None = None) -> None:
        storage = storage_from_string(f"async+{redis_url}" if redis_url else "async+memory://")
        self._limiter = MovingWindowRateLimiter(storage)
        self._item = RateLimitItemPerMinute(per_minute, namespace=f"sf-{name}")

    async def hit(self, key: str) -> int | None:
        """Count one event for `key`: None when allowed, else the seconds to wait (for Retry-After)."""
        if await self._limiter.hit(self._item, key):
            return None
        stats = await self._limiter.get_window_stats(self._item, key)
        return max(1, math.ceil(stats.reset_time - time.time()))
