"""OpenTelemetry tracing: one trace follows a feature across services.

The trace context travels in each event's envelope (`Envelope.trace`, W3C `traceparent`) and in the NATS
message headers. Spans are exported by OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (Jaeger accepts
it); otherwise the API's no-op tracer costs next to nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span

tracer = trace.get_tracer("service_feature")


def configure_tracing(service_name: str) -> None:
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def current_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (empty outside a span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


@contextmanager
def span_from(carrier: Mapping[str, str], name: str, **attributes: str | int) -> Iterator[Span]:
    """A span continuing the trace described by `carrier` (an event's `trace`)."""
    token = context.attach(propagate.extract(dict(carrier)))
    try:
        with tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span
    finally:
        context.detach(token)
