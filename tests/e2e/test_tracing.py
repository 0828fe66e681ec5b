"""One trace follows a feature across services: the gateway's span and every handler's span share it,
carried by the events' envelopes and the NATS headers."""

from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.platform import (
    FINAL,
    feature_request,
    greeting_turns,
    running_platform,
    wait_for,
    write_script,
)

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _tracing() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)  # once per process: this module is the only one that sets it


async def test_a_feature_is_one_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        await api.post("/api/v1/features", json=feature_request(origin, "traced"))
        assert (await wait_for(api, "traced", FINAL))["status"] == "delivered"
    spans = [s for s in EXPORTER.get_finished_spans() if (s.attributes or {}).get("execution_id") == "traced"]
    names = {span.name for span in spans}
    assert {
        "submit feature",
        "handle feature.requests",
        "handle feature.environment.requested",
        "handle feature.environment.completed",
        "handle feature.attempts.requested",
        "handle feature.tests.requested",
        "handle feature.tests.completed",
        "handle feature.review.requested",
        "handle feature.delivery.requested",
    } <= names
    assert len({span.context.trace_id for span in spans}) == 1
    # FastAPI opens a span for the HTTP request; the feature's spans all hang below it.
    trace_spans = [
        s for s in EXPORTER.get_finished_spans() if s.context.trace_id == spans[0].context.trace_id
    ]
    roots = [span for span in trace_spans if span.parent is None]
    assert len(roots) == 1
    assert roots[0].name in {"submit feature", "fastapi.endpoint"} or roots[0].name.startswith("POST")
