"""What a model call cost, in USD, from the token usage a provider reported.

Prices are USD per million tokens: `input` for uncached prompt tokens, `cached_input` for prompt tokens read
from the provider's cache, `cache_write` for prompt tokens written to it (Anthropic: 1.25x input for the
5-minute cache; OpenAI caches for free, so there it equals `input` and no writes are reported), `output` for
generated tokens. `Usage.input_tokens` counts every prompt token, read and written ones included (see the
providers), so cost = (input - read - written) * input + read * cached_input + written * cache_write
+ output * output. Long-prompt surcharges are not modelled.

The built-in table holds the providers' list prices as published in November 2026 (standard tier, short
prompts). Prices change: `LLM_PRICES_JSON` overrides or extends it without a release, e.g.
`{"claude-sonnet-5-5": {"input": 2, "output": 10, "cached_input": 0.1, "cache_write": 2.5},
"qwen3-coder:30b": {"input": 0, "output": 0}}` (`cached_input` and `cache_write` default to `input`).
A model not in the table costs 0.0 and `price_for` returns None, so that the caller can warn that spend is
being under-reported.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from service_feature.llm.base import Usage

PRICES_ENV = "LLM_PRICES_JSON"


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float
    cache_write: float


_ANTHROPIC_CACHE_WRITE = 1.25  # x input, the 5-minute cache the providers' cache_control asks for


def _p(input_: float, output: float, cached_input: float) -> Price:
    """An OpenAI price: writing the cache costs nothing extra."""
    return Price(input=input_, output=output, cached_input=cached_input, cache_write=input_)


def _a(input_: float, output: float, cached_input: float) -> Price:
    """An Anthropic price: cache writes at 1.25x input."""
    return Price(input_, output, cached_input, cache_write=input_ * _ANTHROPIC_CACHE_WRITE)


BUILTIN_PRICES: Mapping[str, Price] = {
    # Anthropic (input, output, cache hits; 5-minute cache writes are 1.25x input)
    "claude-fable-5-1": _a(10.0, 50.0, 0.25),
    "claude-fable-5": _a(10.0, 50.0, 1.0),
    "claude-opus-5-5": _a(4.0, 20.0, 0.20),
    "claude-opus-5": _a(5.0, 25.0, 0.50),
    "claude-opus-4-8": _a(5.0, 25.0, 0.50),
    "claude-opus-4-7": _a(5.0, 25.0, 0.50),
    "claude-opus-4-6": _a(5.0, 25.0, 0.50),
    "claude-opus-4-5": _a(5.0, 25.0, 0.50),
    "claude-sonnet-5-5": _a(2.0, 10.0, 0.10),
    "claude-sonnet-5": _a(2.0, 10.0, 0.20),
    "claude-sonnet-4-6": _a(3.0, 15.0, 0.30),
    "claude-sonnet-4-5": _a(3.0, 15.0, 0.30),
    "claude-haiku-5-5": _a(0.10, 0.50, 0.01),  # prompts up to 100k tokens; 5x above
    "claude-haiku-4-5": _a(1.0, 5.0, 0.10),
    # OpenAI (prompts up to 272k tokens where a long-context tier exists)
    "gpt-6-astra": _p(10.0, 50.0, 1.0),
    "gpt-6.1-sol": _p(2.0, 10.0, 0.10),
    "gpt-6-sol": _p(2.0, 10.0, 0.20),
    "gpt-6.1-terra": _p(1.0, 5.0, 0.05),
    "gpt-6-luna": _p(0.10, 0.50, 0.01),
    "gpt-5.6-terra": _p(2.0, 12.0, 0.20),
    "gpt-5.6-luna": _p(0.20, 1.20, 0.02),
    "gpt-5.5": _p(5.0, 30.0, 0.50),
    "gpt-5.4": _p(2.50, 15.0, 0.25),
    "gpt-5.4-mini": _p(0.75, 4.50, 0.075),
    "gpt-5.4-nano": _p(0.20, 1.25, 0.02),
    "gpt-5": _p(1.25, 10.0, 0.125),
    "gpt-5-mini": _p(0.25, 2.0, 0.025),
    "gpt-5-nano": _p(0.05, 0.40, 0.005),
    "gpt-4.1": _p(2.0, 8.0, 0.50),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "gpt-4o": _p(2.50, 10.0, 1.25),
    "gpt-4o-mini": _p(0.15, 0.60, 0.075),
}

# Dated snapshots ("claude-haiku-4-5-20251001", "gpt-4o-2024-08-06") are priced like their alias.
_DATE_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")


def load_prices(overrides_json: str | None = None) -> dict[str, Price]:
    """The built-in table with `LLM_PRICES_JSON` (or `overrides_json`) applied; ValueError if malformed.

    Call it at start-up to fail fast on a bad override: `cost_usd` would raise the same error later.
    """
    raw = os.environ.get(PRICES_ENV) if overrides_json is None else overrides_json
    return dict(_load(raw or ""))


@lru_cache(maxsize=8)
def _load(raw: str) -> Mapping[str, Price]:
    prices = dict(BUILTIN_PRICES)
    if not raw.strip():
        return prices
    try:
        overrides = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{PRICES_ENV} is not valid JSON: {exc}") from exc
    if not isinstance(overrides, dict):
        raise ValueError(f"{PRICES_ENV} must be an object of model -> prices")
    for model, entry in overrides.items():
        try:
            input_ = float(entry["input"])
            prices[str(model).strip().lower()] = Price(
                input=input_,
                output=float(entry["output"]),
                cached_input=float(entry.get("cached_input", input_)),
                cache_write=float(entry.get("cache_write", input_)),
            )
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise ValueError(
                f'{PRICES_ENV}: {model!r} needs numeric "input" and "output" '
                '(and optionally "cached_input", "cache_write")'
            ) from exc
    return prices


def price_for(model: str) -> Price | None:
    """The price of `model`, tolerating a router prefix ("openai/gpt-5") and a date suffix; None: unknown."""
    prices = load_prices()
    name = model.strip().lower()
    for candidate in (name, name.rsplit("/", 1)[-1]):
        for key in (candidate, _DATE_SUFFIX.sub("", candidate)):
            if key in prices:
                return prices[key]
    return None


def cost_usd(model: str, usage: Usage) -> float:
    """USD for `usage` on `model`; 0.0 for a model without a price (check `price_for(model) is None`)."""
    price = price_for(model)
    if price is None:
        return 0.0
    read = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_write_input_tokens, usage.input_tokens - read)
    uncached = usage.input_tokens - read - written
    return (
        uncached * price.input
        + read * price.cached_input
        + written * price.cache_write
        + usage.output_tokens * price.output
    ) / 1_000_000
