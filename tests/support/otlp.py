"""A local OTLP/HTTP trace receiver, as Jaeger or an OpenTelemetry collector runs it: it decodes each
`POST /v1/traces` body (a protobuf `ExportTraceServiceRequest`) into the spans it carries."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's service.name
    name: str
    trace_id: str  # hex, as Jaeger shows it
    span_id: str
    parent_id: str  # "" for a root span
    attributes: dict[str, str | int]


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))

    @property
    def endpoint(self) -> str:
        """The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        return thread

    def stop(self, thread: threading.Thread) -> None:
        self._server.shutdown()
        self._server.server_close()
        thread.join(5)

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def accept(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.spans += spans
            self.requests += 1


def _value(value: AnyValue) -> str | int:
    return value.int_value if value.HasField("int_value") else value.string_value


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.accept(body)
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:  # quiet: pytest shows failures
            return

    return Handler


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    thread = receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop(thread)


def one_feature_trace(spans: list[ReceivedSpan], execution_id: str) -> list[ReceivedSpan]:
    """Every span of the trace the feature's spans belong to; asserts they belong to one."""
    own = [s for s in spans if s.attributes.get("execution_id") == execution_id]
    trace_ids = {s.trace_id for s in own}
    assert len(trace_ids) == 1, f"{execution_id}'s spans are in {len(trace_ids)} traces"
    return [s for s in spans if s.trace_id in trace_ids]


FEATURE_SPANS = {
    "submit feature",
    "handle feature.requests",
    "handle feature.environment.requested",
    "handle feature.environment.completed",
    "handle feature.attempts.requested",
    "handle feature.tests.requested",
    "handle feature.tests.completed",
    "handle feature.review.requested",
    "handle feature.delivery.requested",
}
