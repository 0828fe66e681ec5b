"""One retry loop for the three forge adapters, and the sorting of a failed call into the errors of `base`.

The adapters do not let their client libraries retry (python-gitlab would sleep in its worker thread with
`time.sleep`, gidgethub does not retry at all): each adapter turns its library's failure into a
`CallFailure` (status, the forge's message, the wait the forge asked for) and this module decides, the same
way for every forge, whether to wait and call again or to raise `ForgeAuthError`, `ForgeRefused` or
`ForgeUnavailable`. The sleep is a parameter so tests observe the waits instead of sitting through them.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import structlog

from service_feature.backoff import (
    RetryPolicy as RetryPolicy,  # re-exported: the adapters and tests name it here
)
from service_feature.forges.base import ForgeAuthError, ForgeError, ForgeRefused, ForgeUnavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

# A reset header holding more than this many seconds is an epoch timestamp (GitHub's X-RateLimit-Reset,
# GitLab's RateLimit-Reset), not a delay (the IETF draft's RateLimit-Reset).
_EPOCH_THRESHOLD = 1_000_000_000


# Fewer tries than a model call: a forge that keeps failing is handed back to the bus (a redelivery) sooner.
FORGE_RETRIES = RetryPolicy(max_attempts=4)


class CallFailure(Exception):
    """One failed forge call in forge-neutral terms; `status` is None when no response arrived."""

    def __init__(
        self,
        status: int | None,
        message: str,
        retry_after: float | None = None,
        *,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.rate_limited = rate_limited

    @property
    def retryable(self) -> bool:
        status = self.status
        return status is None or status == 429 or status >= 500 or self.rate_limited


@dataclass(frozen=True)
class ForgeContext:
    """What an error message needs to say where it happened and what to fix."""

    forge: str  # e.g. "github (https://api.github.com)"
    token_setting: str


def parse_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the forge asked to wait: Retry-After (seconds or HTTP date), else a rate-limit reset.

    `headers` must answer lower-case names (httpx, requests and gidgethub's mappings all do)."""
    current = time.time() if now is None else now
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        return _parse_retry_after(retry_after, current)
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        value = headers.get(name)
        if value is not None:
            return _parse_reset(value, current)
    return None


def _parse_retry_after(value: str, now: float) -> float | None:
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now, 0.0)


def _parse_reset(value: str, now: float) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    if number > _EPOCH_THRESHOLD:
        return max(number - now, 0.0)
    return max(number, 0.0)


def is_rate_limited(status: int, headers: Mapping[str, str]) -> bool:
    """A 403 that is GitHub's primary rate limit (no requests left) or a secondary one (Retry-After)."""
    if status != 403:
        return False
    return headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers


def to_forge_error(failure: CallFailure, context: ForgeContext, attempts: int) -> ForgeError:
    """The error the worker acts on; its words say what failed and what the operator should change."""
    status = failure.status
    if failure.retryable:
        where = "no response" if status is None else f"HTTP {status}"
        return ForgeUnavailable(
            context.forge,
            f"unavailable after {attempts} attempt(s) ({where}): {failure.message}",
            status,
            retry_after=failure.retry_after,
        )
    if status in (401, 403):
        return ForgeAuthError(
            context.forge,
            f"authentication failed (HTTP {status}): {failure.message}; check the token in "
            f"{context.token_setting} (it must be valid and allowed to open pull requests)",
            status,
        )
    return ForgeRefused(context.forge, f"refused (HTTP {status}): {failure.message}", status)


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """Exponential with jitter: half the step fixed, half random, so workers that failed together spread."""
    step = min(policy.max_wait, policy.initial_wait * 2.0 ** (attempt - 1))
    return step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not a secret


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    context: ForgeContext,
    policy: RetryPolicy,
    sleep: Sleep = asyncio.sleep,
    operation: str = "call",
) -> T:
    """`call()` until it succeeds, a failure is permanent, or the attempts run out."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except CallFailure as failure:
            if not failure.retryable or attempt >= policy.max_attempts:
                raise to_forge_error(failure, context, attempt) from None
            wait = failure.retry_after if failure.retry_after is not None else backoff(policy, attempt)
            if wait > policy.max_wait:
                raise to_forge_error(failure, context, attempt) from None
            log.warning(
                "forge.retry",
                forge=context.forge,
                operation=operation,
                status=failure.status,
                attempt=attempt,
                wait=round(wait, 3),
            )
            await sleep(wait)
