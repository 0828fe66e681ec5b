"""One trace follows a feature across services: the gateway's span and every handler's span share it,
carried by the events' envelopes and the NATS headers. The spans are read where a collector reads them:
exported by `telemetry.configure_tracing`'s OTLP/HTTP exporter to a local receiver, so this test fails
when the export does (tests/integration/distributed/test_otlp_export.py does the same across four
service processes)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from service_feature.telemetry import configure_tracing
from tests.support.otlp import FEATURE_SPANS, OtlpReceiver, one_feature_trace, otlp_receiver
from tests.support.platform import (
    FINAL,
    feature_request,
    greeting_turns,
    running_platform,
    wait_for,
    write_script,
)


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as receiver:
        yield receiver


async def test_a_feature_is_one_trace_exported_by_otlp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path, receiver: OtlpReceiver
) -> None:
    # The global provider is set once per process: this module is the only one in the suite that sets it.
    provider = configure_tracing("service-feature", receiver.endpoint)
    assert provider is not None
    try:
        write_script(scripts, greeting_turns())
        async with running_platform(tmp_path, monkeypatch, scripts) as api:
            await api.post("/api/v1/features", json=feature_request(origin, "traced"))
            assert (await wait_for(api, "traced", FINAL))["status"] == "delivered"
    finally:
        provider.shutdown()  # sends what the batch still holds, as the CLI does when a process stops

    spans = one_feature_trace(receiver.received(), "traced")
    assert {span.name for span in spans} >= FEATURE_SPANS
    assert {span.service for span in spans} == {"service-feature"}
    # One root, none orphaned: FastAPI's own span of the request ("POST /api/v1/features" in the versions
    # pinned), or the gateway's span where FastAPI opens none.
    ids = {span.span_id for span in spans}
    (root,) = [span for span in spans if span.parent_id not in ids]
    assert root.parent_id == ""
    assert root.name == "submit feature" or root.name.startswith("POST")


def test_no_endpoint_exports_nothing() -> None:
    assert configure_tracing("service-feature", None) is None
    assert configure_tracing("service-feature", "") is None
