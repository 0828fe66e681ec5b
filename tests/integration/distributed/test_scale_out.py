"""The four services as separate processes on PostgreSQL and NATS: three workers share the work, one is
SIGKILLed mid-run, and every feature is still delivered exactly once."""

import asyncio
import subprocess
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest

from service_feature.bus.embedded import EmbeddedNatsServer
from tests.support.cluster import metric, prepared_cluster
from tests.support.platform import feature_request, greeting_turns, write_script

pytestmark = pytest.mark.xdist_group("cluster")

FEATURES = 30
# Guards against hanging, not claims about speed (what the test proves is exactly-once delivery):
# generous enough for a 2-core machine under full load.
FIRST_DELIVERIES_WITHIN = 300.0
ALL_DELIVERED_WITHIN = 900.0
HTTP_TIMEOUT = 30.0


def _branches(origin: Path) -> Counter[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(origin), "for-each-ref", "--format=%(refname:short)", "refs/heads/feature/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Counter(out.split())


def test_three_workers_one_killed_thirty_features_delivered_exactly_once(
    tmp_path: Path, origin: Path, scripts: Path, postgres_url: str, nats_server: EmbeddedNatsServer
) -> None:
    write_script(scripts, greeting_turns(), latency_ms=200)
    cluster, headers = prepared_cluster(
        tmp_path / "cluster",
        postgres_url,
        nats_server.url,
        {
            "LLM_SCRIPT": str(scripts),
            "SF_ACK_WAIT_SECONDS": "3",
            "MAX_CONCURRENT_EXECUTIONS": "4",
            "SF_WORKER_CONCURRENCY": "2",
        },
    )
    gateway = cluster.start("gateway")
    reviewer = cluster.start("reviewer")
    executor = cluster.start("executor")
    for number in range(3):
        cluster.start("worker", f"worker-{number}")
    try:
        cluster.wait_ready()
        for service in ("gateway", "reviewer", "executor", "worker-0"):
            replica = cluster.replicas[service]
            assert httpx.get(f"{replica.url}/health", timeout=HTTP_TIMEOUT).json() == {
                "status": "healthy",
                "service": replica.service,
            }
        active = httpx.get(f"{executor.url}/api/v1/executions/active", headers=headers, timeout=HTTP_TIMEOUT)
        assert active.json()["count"] == 0

        ids = [f"scale{number:02}" for number in range(FEATURES)]
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=HTTP_TIMEOUT) as api:
            for execution_id in ids:
                assert (
                    api.post("/api/v1/features", json=feature_request(origin, execution_id)).status_code
                    == 202
                )
            deadline = time.monotonic() + FIRST_DELIVERIES_WITHIN
            while sum(1 for i in ids if api.get(f"/api/v1/features/{i}").json()["status"] == "delivered") < 5:
                assert time.monotonic() < deadline, "nothing was delivered"
                time.sleep(0.2)
            cluster.kill("worker-1")  # mid-run, holding whatever it was working on

            deadline = time.monotonic() + ALL_DELIVERED_WITHIN
            features = {}
            for execution_id in ids:
                while (feature := api.get(f"/api/v1/features/{execution_id}").json())["status"] not in {
                    "delivered",
                    "failed",
                    "rejected",
                }:
                    assert time.monotonic() < deadline, f"{execution_id} stuck in {feature['status']}"
                    time.sleep(0.2)
                features[execution_id] = feature
            assert {i: f["status"] for i, f in features.items()} == dict.fromkeys(ids, "delivered")

            for execution_id in ids:
                events = api.get(f"/api/v1/features/{execution_id}/events").json()["events"]
                counts = Counter(event["type"] for event in events)
                assert counts["status.delivered"] == 1, execution_id
                assert counts["feature.accepted"] == 1, execution_id

        assert _branches(origin) == Counter(f"feature/{i}" for i in ids)
        delivered, logged, pending = asyncio.run(
            _counts(
                postgres_url,
                "SELECT count(*) FROM features WHERE status = 'delivered'",
                "SELECT count(*) FROM feature_events WHERE type = 'status.delivered'",
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
            )
        )
        assert (delivered, logged) == (FEATURES, FEATURES)
        assert pending == 0

        submitted = metric(
            gateway.metrics(), "sf_http_requests_total", route="/api/v1/features", method="POST", status="202"
        )
        approved = metric(reviewer.metrics(), "sf_features_total", status="delivering")
        tested = metric(executor.metrics(), "sf_stage_duration_seconds_count", stage="tests")
        assert (submitted, approved) == (FEATURES, FEATURES)
        assert tested >= FEATURES
        survivors = sum(
            metric(cluster.replicas[f"worker-{n}"].metrics(), "sf_features_total", status="delivered")
            for n in (0, 2)
        )
        assert 0 < survivors <= FEATURES
    finally:
        codes = cluster.stop()
    assert all(code == 0 for code in codes.values()), codes


async def _counts(url: str, *queries: str) -> list[int]:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [int(await connection.fetchval(query)) for query in queries]
    finally:
        await connection.close()
