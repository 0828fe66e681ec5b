"""The rate limiter against real Redis, and without it: a dead Redis never fails or frees a submission."""

from __future__ import annotations

import socket
import uuid

import pytest
from structlog.testing import capture_logs

from service_feature import ratelimit
from service_feature.metrics import RATE_LIMIT_FALLBACKS
from service_feature.ratelimit import RateLimiter

REDIS = "redis://127.0.0.1:6379/0"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fallbacks(name: str) -> float:
    return RATE_LIMIT_FALLBACKS.labels(limit=name)._value.get()


async def test_two_replicas_share_one_window_in_redis() -> None:
    name, key = f"shared-{uuid.uuid4().hex}", "key"
    first, second = RateLimiter(name, 2, REDIS), RateLimiter(name, 2, REDIS)

    assert await first.hit(key) is None
    assert await second.hit(key) is None
    retry_after = await first.hit(key)

    assert retry_after is not None
    assert 1 <= retry_after <= 60
    assert fallbacks(name) == 0


async def test_without_redis_the_limit_still_holds_in_this_process() -> None:
    name = f"down-{uuid.uuid4().hex}"
    limiter = RateLimiter(name, 2, f"redis://127.0.0.1:{closed_port()}/0")

    with capture_logs() as logs:
        results = [await limiter.hit("key") for _ in range(3)]
        other_key = await limiter.hit("other")

    assert results[:2] == [None, None]
    assert results[2] is not None
    assert 1 <= results[2] <= 60
    assert other_key is None
    warnings = [log for log in logs if log["event"] == "ratelimit.shared_storage_unavailable"]
    assert len(warnings) == 1  # then Redis is left alone until the retry time
    assert warnings[0]["log_level"] == "warning"
    assert fallbacks(name) == 1


async def test_redis_is_tried_again_after_the_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"retry-{uuid.uuid4().hex}"
    monkeypatch.setattr(ratelimit, "RETRY_SHARED_AFTER_SECONDS", 0.0)
    limiter = RateLimiter(name, 100, f"redis://127.0.0.1:{closed_port()}/0")

    for _ in range(3):
        assert await limiter.hit("key") is None

    assert fallbacks(name) == 3
