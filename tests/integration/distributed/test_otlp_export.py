"""Tracing as a collector sees it: the four services as separate processes (`service-feature gateway`,
`worker`, `reviewer`, `executor`), each given OTEL_EXPORTER_OTLP_ENDPOINT, export their spans by OTLP/HTTP
to a local receiver, and one feature's spans from the submission to its delivery arrive as one trace.

The batch processor is told to wait far longer than the test runs, so the spans can only arrive through
the flush each process does when it is stopped (SIGTERM): a process that dropped its batch would fail this."""

import time
from pathlib import Path

import httpx
import pytest

from service_feature.bus.embedded import EmbeddedNatsServer
from tests.support.cluster import prepared_cluster
from tests.support.otlp import FEATURE_SPANS, one_feature_trace, otlp_receiver
from tests.support.platform import feature_request, greeting_turns, write_script

pytestmark = pytest.mark.xdist_group("cluster")

SERVICES = ("gateway", "worker", "reviewer", "executor")
FINAL = {"delivered", "failed", "rejected", "cancelled", "awaiting_approval"}


def _wait_final(api: httpx.Client, execution_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (status := str(api.get(f"/api/v1/features/{execution_id}").json()["status"])) not in FINAL:
        assert time.monotonic() < deadline, f"{execution_id} still {status}"
        time.sleep(0.2)
    return status


def test_one_feature_is_one_trace_across_the_four_service_processes(
    tmp_path: Path, origin: Path, scripts: Path, postgres_url: str, nats_server: EmbeddedNatsServer
) -> None:
    write_script(scripts, greeting_turns())
    with otlp_receiver() as receiver:
        cluster, headers = prepared_cluster(
            tmp_path / "cluster",
            postgres_url,
            nats_server.url,
            {
                "LLM_SCRIPT": str(scripts),
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "3600000",  # an hour: only the flush at shutdown sends
            },
        )
        for service in SERVICES:
            cluster.start(service)
        try:
            cluster.wait_ready()
            with httpx.Client(base_url=cluster.replicas["gateway"].url, headers=headers, timeout=10) as api:
                accepted = api.post("/api/v1/features", json=feature_request(origin, "exported"))
                assert accepted.status_code == 202, accepted.text
                assert _wait_final(api, "exported", timeout=240) == "delivered"
            assert receiver.received() == []  # nothing sent before the processes stop
        finally:
            codes = cluster.stop()
        assert codes == dict.fromkeys(SERVICES, 0)
        spans = one_feature_trace(receiver.received(), "exported")

    assert {span.name for span in spans} >= FEATURE_SPANS
    by_service = {service: {s.name for s in spans if s.service == service} for service in SERVICES}
    assert all(by_service.values()), f"a service exported none of the feature's spans: {by_service}"
    assert "submit feature" in by_service["gateway"]
    assert "handle feature.delivery.requested" in by_service["worker"]
    # One root (the gateway's HTTP request); every other span's parent arrived too, whichever process
    # exported it: the context crossed the process boundaries intact.
    ids = {span.span_id for span in spans}
    roots = [span for span in spans if span.parent_id not in ids]
    assert [(root.service, root.parent_id) for root in roots] == [("gateway", "")]
