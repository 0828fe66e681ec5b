"""OpenTelemetry tracing: one trace follows a feature across services.

The trace context travels in each event's envelope (`Envelope.trace`, W3C `traceparent`) and in the NATS
message headers. Each service process exports its spans by OTLP/HTTP when the command line is given an
endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, which Jaeger accepts); otherwise the API's no-op tracer costs
next to nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

tracer = trace.get_tracer("service_feature")
# OTLP/HTTP appends this to a base endpoint such as OTEL_EXPORTER_OTLP_ENDPOINT names
TRACES_PATH = "/v1/traces"


def configure_tracing(service_name: str, endpoint: str | None) -> TracerProvider | None:
    """Export this process's spans, as `service_name`, to the OTLP/HTTP collector at `endpoint` (a base
    URL such as `http://jaeger:4318`); nothing when `endpoint` is empty. Returns the provider to shut
    down, which sends the spans still batched."""
    if not endpoint:
        return None
    # imported here: the SDK and exporter load only in a process that exports
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + TRACES_PATH)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


@contextmanager
def exporting_traces(service_name: str, endpoint: str | None) -> Iterator[None]:
    """`configure_tracing` for the duration of the block, then flush: the spans of a process's last
    seconds (its shutdown, a feature delivered just before) would otherwise die in the batch queue."""
    provider = configure_tracing(service_name, endpoint)
    try:
        yield
    finally:
        if provider is not None:
            provider.shutdown()


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
