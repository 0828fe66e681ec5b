"""The LLM_* settings the worker and the reviewer share, and the provider built from them."""

from __future__ import annotations

import pytest

from service_feature.config import ReviewerSettings, WorkerSettings
from service_feature.llm.anthropic import AnthropicProvider
from service_feature.llm.factory import provider_from_settings
from service_feature.llm.openai import OpenAIProvider
from service_feature.llm.retry import RetryPolicy

LLM_ENV = ("LLM_PROVIDER", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_REVIEW")


@pytest.fixture(autouse=True)
def _no_llm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),
        ({"LLM_PROVIDER": "scripted"}, False),
        ({"ANTHROPIC_API_KEY": "k"}, True),
        ({"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": "http://localhost:11434/v1"}, True),
        ({"ANTHROPIC_API_KEY": "k", "LLM_REVIEW": "false"}, False),
    ],
)
def test_the_model_review_runs_only_with_a_real_provider(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], enabled: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert ReviewerSettings().model_review_enabled is enabled


@pytest.mark.parametrize("settings_class", [WorkerSettings, ReviewerSettings])
def test_both_services_build_the_same_provider_from_the_same_variables(
    monkeypatch: pytest.MonkeyPatch, settings_class: type[WorkerSettings] | type[ReviewerSettings]
) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "anthropic")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/proxy")
    monkeypatch.setenv("LLM_MODEL", "claude-haiku-5-5")
    monkeypatch.setenv("LLM_MAX_TOKENS", "1234")
    monkeypatch.setenv("LLM_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("LLM_MAX_RETRY_WAIT_SECONDS", "7")

    provider = provider_from_settings(settings_class())

    assert isinstance(provider, AnthropicProvider)
    assert (provider.model, provider.max_tokens) == ("claude-haiku-5-5", 1234)
    assert provider.retry == RetryPolicy(max_attempts=2, max_wait=7.0)
    assert str(provider._client.base_url).startswith("http://127.0.0.1:9/proxy")


def test_openai_settings_build_an_openai_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")

    provider = provider_from_settings(ReviewerSettings())

    assert isinstance(provider, OpenAIProvider)
    assert str(provider._client.base_url).startswith("http://127.0.0.1:9/v1")


def test_the_scripted_provider_is_not_built_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "scripted")
    with pytest.raises(ValueError, match="unknown LLM provider 'scripted'"):
        provider_from_settings(WorkerSettings())
