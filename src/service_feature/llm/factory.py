"""Build the configured LLM provider: by name, or from the LLM_* settings the worker and the reviewer share.

The scripted provider is not built here: it replays a per-feature transcript from a position the worker
keeps, so the worker constructs it itself.

Every provider takes the same keywords; None means "the provider's default", which for the key and base URL
is the SDK's own environment variables (ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL, OPENAI_API_KEY /
OPENAI_BASE_URL).
"""

from __future__ import annotations

from collections.abc import Callable

from service_feature.config import LLMSettings
from service_feature.llm.anthropic import AnthropicProvider
from service_feature.llm.base import LLMProvider
from service_feature.llm.openai import OpenAIProvider
from service_feature.llm.retry import RetryPolicy

# Both take the same keyword arguments (those of create_provider).
_PROVIDERS: dict[str, Callable[..., LLMProvider]] = {"anthropic": AnthropicProvider, "openai": OpenAIProvider}
PROVIDER_KINDS = tuple(_PROVIDERS)


def create_provider(
    kind: str,
    *,
    model: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
) -> LLMProvider:
    """A provider of `kind`; ValueError for a kind nobody implements."""
    provider = _PROVIDERS.get(kind)
    if provider is None:
        raise ValueError(f"unknown LLM provider {kind!r}: expected one of {', '.join(PROVIDER_KINDS)}")
    return provider(
        model=model, api_key=api_key, base_url=base_url, max_tokens=max_tokens, timeout=timeout, retry=retry
    )


def provider_from_settings(settings: LLMSettings) -> LLMProvider:
    """The real provider LLM_PROVIDER names, with the key, base URL, limits and retries of `settings`."""
    kind = settings.resolved_llm_provider
    anthropic = kind == "anthropic"
    secret = settings.anthropic_api_key if anthropic else settings.openai_api_key
    return create_provider(
        kind,
        model=settings.llm_model,
        api_key=secret.get_secret_value() if secret else None,
        base_url=settings.anthropic_base_url if anthropic else settings.openai_base_url,
        max_tokens=settings.llm_max_tokens,
        timeout=settings.llm_timeout_seconds,
        retry=RetryPolicy(
            max_attempts=settings.llm_max_attempts, max_wait=settings.llm_max_retry_wait_seconds
        ),
    )
