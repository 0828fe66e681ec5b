"""Per-key rate limits, through the `limits` library: a moving window in this process's memory, or in Redis
when REDIS_URL is set, so every gateway replica counts against the same window.

Redis is a shared counter here, not a store of accepted work, so losing it must not stop submissions: when
it does not answer within a second, counting falls back to this process's memory (each replica then holds
the limit on its own), with a warning and `sf_rate_limit_fallbacks_total`, and Redis is tried again after
`RETRY_SHARED_AFTER_SECONDS`. A request is never failed (or let through uncounted) because Redis is down.
"""

from __future__ import annotations

import math
import time

import structlog
from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from service_feature.metrics import RATE_LIMIT_FALLBACKS

RETRY_SHARED_AFTER_SECONDS = 5.0
_REDIS_TIMEOUT_SECONDS = 1.0

_log = structlog.get_logger()


class RateLimiter:
    def __init__(self, name: str, per_minute: int, redis_url: str | None = None) -> None:
        self._name = name
        self._item = RateLimitItemPerMinute(per_minute, namespace=f"sf-{name}")
        self._local = MovingWindowRateLimiter(storage_from_string("async+memory://"))
        self._shared = None
        if redis_url:
            shared = storage_from_string(
                f"async+{redis_url}",
                wrap_exceptions=True,
                connect_timeout=_REDIS_TIMEOUT_SECONDS,
                stream_timeout=_REDIS_TIMEOUT_SECONDS,
            )
            self._shared = MovingWindowRateLimiter(shared)
        self._shared_down_until = 0.0

    async def hit(self, key: str) -> int | None:
        """Count one event for `key`: None when allowed, else the seconds to wait (for Retry-After)."""
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                return await self._hit(self._shared, key)
            except StorageError as error:
                self._shared_down_until = time.monotonic() + RETRY_SHARED_AFTER_SECONDS
                RATE_LIMIT_FALLBACKS.labels(limit=self._name).inc()
                _log.warning(
                    "ratelimit.shared_storage_unavailable",
                    limit=self._name,
                    error=str(error),
                    consequence="counted in this process only",
                    retry_in_seconds=RETRY_SHARED_AFTER_SECONDS,
                )
        return await self._hit(self._local, key)

    async def _hit(self, limiter: MovingWindowRateLimiter, key: str) -> int | None:
        if await limiter.hit(self._item, key):
            return None
        stats = await limiter.get_window_stats(self._item, key)
        return max(1, math.ceil(stats.reset_time - time.time()))
