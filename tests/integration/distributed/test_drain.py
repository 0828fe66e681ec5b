"""SIGTERM drains a worker: it stops fetching, hands its in-flight step back at once (nak) after the grace
period, and exits 0; another replica finishes the feature well before the ack wait would have expired."""

import signal
import time
from pathlib import Path

import httpx
import pytest

from service_feature.bus.embedded import EmbeddedNatsServer
from tests.support.cluster import prepared_cluster
from tests.support.platform import feature_request, greeting_turns, write_script

pytestmark = pytest.mark.xdist_group("cluster")

ACK_WAIT = 60.0


def test_sigterm_hands_in_flight_work_to_another_replica(
    tmp_path: Path, origin: Path, scripts: Path, postgres_url: str, nats_server: EmbeddedNatsServer
) -> None:
    write_script(scripts, greeting_turns(), latency_ms=1500)
    cluster, headers = prepared_cluster(
        tmp_path / "cluster",
        postgres_url,
        nats_server.url,
        {"LLM_SCRIPT": str(scripts), "SF_ACK_WAIT_SECONDS": str(ACK_WAIT), "SF_SHUTDOWN_GRACE_SECONDS": "1"},
    )
    gateway = cluster.start("gateway")
    cluster.start("reviewer")
    cluster.start("executor")
    leaving = cluster.start("worker", "worker-leaving")
    try:
        cluster.wait_ready()
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as api:
            api.post("/api/v1/features", json=feature_request(origin, "drained")).raise_for_status()
            deadline = time.monotonic() + 30
            while api.get("/api/v1/features/drained").json()["status"] != "generating":
                assert time.monotonic() < deadline, "never reached generating"
                time.sleep(0.05)
            cluster.start("worker", "worker-staying")
            cluster.wait_ready()

            stopped_at = time.monotonic()
            leaving.process.send_signal(signal.SIGTERM)
            assert leaving.process.wait(15) == 0
            assert time.monotonic() - stopped_at < 10
            del cluster.replicas["worker-leaving"]

            while (feature := api.get("/api/v1/features/drained").json())["status"] not in {
                "delivered",
                "failed",
            }:
                assert time.monotonic() - stopped_at < ACK_WAIT / 2, f"not handed back: {feature['status']}"
                time.sleep(0.1)
            assert feature["status"] == "delivered", feature["failure_reason"]
    finally:
        codes = cluster.stop()
    assert all(code == 0 for code in codes.values()), codes
