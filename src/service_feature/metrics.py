"""Prometheus metrics, one registry per process (the default), served at `/metrics` by every service.

Names are the contract of the Grafana dashboard in deploy/compose: change them together.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("sf_http_requests", "HTTP requests served", ["route", "method", "status"])
FEATURE_TRANSITIONS = Counter(
    "sf_features", "Features that entered a status (committed transitions)", ["status"]
)
STAGE_DURATION = Histogram(
    "sf_stage_duration_seconds",
    "Time spent in one pipeline stage",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
QUEUE_PENDING = Gauge("sf_queue_pending", "Messages waiting or in flight for a consumer", ["consumer"])
EXECUTIONS_ACTIVE = Gauge("sf_executions_active", "Test executions running in this process")
LLM_TOKENS = Counter("sf_llm_tokens", "LLM tokens", ["provider", "model", "kind"])
LLM_COST = Counter("sf_llm_cost_usd", "LLM cost in US dollars", ["provider", "model"])
DEAD_LETTERS = Counter("sf_dead_letters", "Messages moved to the dead-letter subject", ["subject"])
RATE_LIMIT_FALLBACKS = Counter(
    "sf_rate_limit_fallbacks",
    "Times the shared (Redis) rate-limit storage failed and counting fell back to this process",
    ["limit"],
)


def count_llm_usage(provider: str, model: str, tokens: Mapping[str, int], cost_usd: float) -> None:
    """One model call's tokens (`input_tokens`, `output_tokens`, `cached_input_tokens`) and dollars."""
    for token_kind, count in tokens.items():
        LLM_TOKENS.labels(provider, model, token_kind.removesuffix("_tokens")).inc(count)
    LLM_COST.labels(provider, model).inc(cost_usd)
