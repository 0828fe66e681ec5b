"""The price table, its LLM_PRICES_JSON override, and cost_usd's arithmetic."""

from __future__ import annotations

import pytest

from service_feature.llm.base import Usage
from service_feature.llm.pricing import (
    BUILTIN_PRICES,
    PRICES_ENV,
    Price,
    cost_usd,
    load_prices,
    price_for,
)


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICES_ENV, raising=False)


def test_cached_input_is_charged_at_the_cached_rate() -> None:
    # claude-sonnet-4-6: $3 input, $0.30 cache hits, $15 output per million tokens.
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000)
    assert cost_usd("claude-sonnet-4-6", usage) == pytest.approx(0.6 * 3 + 0.4 * 0.3 + 0.1 * 15)


def test_anthropic_cache_writes_are_charged_at_one_and_a_quarter_input() -> None:
    # Of 1M prompt tokens: 300k read from the cache, 500k written to it, 200k plain.
    usage = Usage(
        input_tokens=1_000_000,
        cached_input_tokens=300_000,
        cache_write_input_tokens=500_000,
        output_tokens=0,
    )
    assert cost_usd("claude-sonnet-4-6", usage) == pytest.approx(0.2 * 3 + 0.3 * 0.3 + 0.5 * 3 * 1.25)


def test_openai_prices() -> None:
    usage = Usage(input_tokens=2_000_000, cached_input_tokens=0, output_tokens=1_000_000)
    assert cost_usd("gpt-4o-mini", usage) == pytest.approx(2 * 0.15 + 0.60)


@pytest.mark.parametrize(
    ("reported", "listed"),
    [
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/gpt-5.4-mini", "gpt-5.4-mini"),
        ("Claude-Opus-4-6", "claude-opus-4-6"),
    ],
)
def test_snapshots_and_router_names_resolve_to_the_listed_model(reported: str, listed: str) -> None:
    assert price_for(reported) == BUILTIN_PRICES[listed]


def test_unknown_model_costs_nothing_and_is_flagged() -> None:
    assert price_for("llama3.1:8b") is None
    assert cost_usd("llama3.1:8b", Usage(input_tokens=1000, output_tokens=1000)) == 0.0


def test_environment_overrides_and_extends_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        PRICES_ENV,
        '{"gpt-4o": {"input": 1, "output": 2, "cached_input": 0.5, "cache_write": 1.5},'
        ' "Llama3.1:8b": {"input": 0.1, "output": 0.2}}',
    )
    assert price_for("gpt-4o") == Price(input=1, output=2, cached_input=0.5, cache_write=1.5)
    assert price_for("llama3.1:8b") == Price(input=0.1, output=0.2, cached_input=0.1, cache_write=0.1)
    assert cost_usd("llama3.1:8b", Usage(input_tokens=10_000_000)) == pytest.approx(1.0)
    assert price_for("claude-opus-4-6") == BUILTIN_PRICES["claude-opus-4-6"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be an object"),
        ('{"m": {"input": 1}}', "needs numeric"),
        ('{"m": {"input": "cheap", "output": 1}}', "needs numeric"),
        ('{"m": 3}', "needs numeric"),
    ],
)
def test_a_malformed_override_fails_loudly(raw: str, problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=problem):
        load_prices(raw)
    monkeypatch.setenv(PRICES_ENV, raw)
    with pytest.raises(ValueError, match=problem):
        cost_usd("gpt-4o", Usage(input_tokens=1))


def test_builtin_prices_are_consistent() -> None:
    for model, price in BUILTIN_PRICES.items():
        assert model == model.lower()
        assert 0 < price.cached_input <= price.input < price.output, model
        assert price.cache_write == price.input * (1.25 if model.startswith("claude-") else 1), model
