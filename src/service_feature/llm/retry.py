"""One retry policy for every LLM provider, and the translation of final failures into `ProviderError`.

The official SDKs each ship their own retry loop; both providers build their clients with `max_retries=0`
so that this module is the only place that decides whether, when and how often a model call is repeated.
A provider catches its SDK's exceptions and re-raises them as `CallFailure` (status, provider message,
`retry-after`), which keeps this module free of SDK types and identical for Anthropic and OpenAI.

Retried: HTTP 408, 409, 429 and every 5xx (Anthropic's 529 "overloaded" included), connection errors and
timeouts — what the SDKs themselves retry. Waits follow the server's `retry-after-ms` / `retry-after`
when it sends one, else exponential backoff with jitter; every wait is capped at `RetryPolicy.max_wait`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from service_feature.backoff import (
    RetryPolicy as RetryPolicy,  # re-exported: the adapters and tests name it here
)
from service_feature.llm.base import ProviderError

log = structlog.get_logger(__name__)

T = TypeVar("T")

_RETRYABLE_STATUSES = frozenset({408, 409, 429})


class CallFailure(Exception):
    """One failed model call, in provider-neutral terms.

    `status` is the HTTP status, or None when no response arrived (connection error, timeout).
    """

    def __init__(self, status: int | None, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, status: int, headers: Mapping[str, str], message: str) -> CallFailure:
        return cls(status, message, parse_retry_after(headers))

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in _RETRYABLE_STATUSES or self.status >= 500

    def to_provider_error(self, provider: str, attempts: int) -> ProviderError:
        """The short human reason a feature failed; what the operator has to fix is in the words."""
        status = self.status
        if status == 401:
            return ProviderError(f"{provider}: authentication failed (HTTP 401): {self.message}")
        if status == 403:
            return ProviderError(f"{provider}: permission denied (HTTP 403): {self.message}")
        if status in (400, 413, 422):
            return ProviderError(f"{provider}: invalid request: {self.message}")
        if status == 404:
            return ProviderError(
                f"{provider}: not found (HTTP 404), check model and base URL: {self.message}"
            )
        if status == 429:
            return ProviderError(f"{provider}: rate limited after {attempts} attempts: {self.message}")
        if self.retryable:
            where = "no response" if status is None else f"HTTP {status}"
            return ProviderError(
                f"{provider}: provider unavailable after {attempts} attempts ({where}): {self.message}"
            )
        return ProviderError(f"{provider}: request failed (HTTP {status}): {self.message}")


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, else `retry-after` (seconds or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class _RetryAfterOrBackoff(wait_base):
    """The server's `retry-after` when it gave one, else exponential backoff; never above `max_wait`."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._max_wait = policy.max_wait
        self._backoff = wait_exponential_jitter(
            multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.initial_wait
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, CallFailure) and failure.retry_after is not None:
            return min(failure.retry_after, self._max_wait)
        return self._backoff(retry_state)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, CallFailure) and exc.retryable


async def call_with_retries(call: Callable[[], Awaitable[T]], *, provider: str, policy: RetryPolicy) -> T:
    """Run `call` under `policy`; a `CallFailure` that survives it becomes a `ProviderError`."""

    async def before_sleep(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        log.warning(
            "llm.retry",
            provider=provider,
            attempt=state.attempt_number,
            status=getattr(failure, "status", None),
            reason=str(failure),
            wait_seconds=round(state.upcoming_sleep, 3),
        )

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=_RetryAfterOrBackoff(policy),
        retry=retry_if_exception(_is_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )

    async def attempt() -> T:  # a coroutine function, so that tenacity awaits it
        return await call()

    try:
        return await retrying(attempt)
    except CallFailure as failure:
        attempts = int(retrying.statistics.get("attempt_number", 1))
        raise failure.to_provider_error(provider, attempts) from failure
