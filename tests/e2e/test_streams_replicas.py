"""Two gateway replicas (separate processes) behind one port (a round-robin proxy, as a load balancer),
over one PostgreSQL database and one NATS server, the services beside them as processes of their own:
both stream a feature's events in the same order, and a client cut off from one replica resumes through
the same port on the other with Last-Event-ID, missing nothing."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_feature.bus.embedded import EmbeddedNatsServer
from service_feature.follow import StreamMessage, stream_messages
from tests.support.cluster import prepared_cluster
from tests.support.platform import feature_request, greeting_turns, write_script
from tests.support.proxy import round_robin_proxy

pytestmark = [pytest.mark.xdist_group("cluster"), pytest.mark.postgres, pytest.mark.slow]


async def _read(
    url: str,
    headers: dict[str, str],
    path: str,
    *,
    last: str | None = None,
    count: int = 0,
    opened: asyncio.Event | None = None,
) -> list[StreamMessage]:
    """The stream's messages to its end, or its first `count` (then disconnect); `opened` is set at the
    first message."""
    sent = {**headers, **({"Last-Event-ID": last} if last else {})}
    messages: list[StreamMessage] = []
    async with (
        asyncio.timeout(180),
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("GET", path, headers=sent) as response,
    ):
        assert response.status_code == 200, await response.aread()
        async for message in stream_messages(response.aiter_lines()):
            if opened is not None:
                opened.set()
            messages.append(message)
            if len(messages) == count:
                break
    return messages


def _events(messages: list[StreamMessage]) -> list[dict[str, Any]]:
    return [json.loads(message.data) for message in messages if message.event == "status"]


async def _scenario(a: str, b: str, headers: dict[str, str], origin: Path) -> None:
    async with httpx.AsyncClient(base_url=a, headers=headers, timeout=30) as api:
        submitted = await api.post("/api/v1/features", json=feature_request(origin, "replicated"))
        assert submitted.status_code == 202, submitted.text
    path = "/api/v1/features/replicated/stream"
    replicas = [(httpx.URL(url).host, int(httpx.URL(url).port or 80)) for url in (a, b)]
    async with round_robin_proxy(replicas) as proxy:
        # Connections are opened one after another, so the proxy's turns are known: a, b, a, then b.
        first_open, second_open = asyncio.Event(), asyncio.Event()
        reading_a = asyncio.create_task(_read(proxy.url, headers, path, opened=first_open))
        await first_open.wait()
        reading_b = asyncio.create_task(_read(proxy.url, headers, path, opened=second_open))
        await second_open.wait()
        first = await _read(proxy.url, headers, path, count=3)
        switched = first + await _read(proxy.url, headers, path, last=first[-1].id)
        on_a, on_b = await asyncio.gather(reading_a, reading_b)
    assert proxy.served == [0, 1, 0, 1]  # the resume went to the other replica, through the same port
    async with httpx.AsyncClient(base_url=b, headers=headers, timeout=30) as api:
        logged = (await api.get("/api/v1/features/replicated/events")).json()["events"]
    log = [{"execution_id": "replicated", **event} for event in logged]
    assert log[-1]["status"] == "delivered"
    assert _events(on_a) == log
    assert _events(on_b) == log
    assert _events(switched) == log
    for stream in (on_a, on_b, switched):
        assert stream[-1].event == "end"


def test_replicas_stream_the_same_events_and_resume_each_other(
    tmp_path: Path, origin: Path, scripts: Path, postgres_url: str, nats_server: EmbeddedNatsServer
) -> None:
    write_script(scripts, greeting_turns(), latency_ms=300)
    cluster, headers = prepared_cluster(
        tmp_path / "cluster",
        postgres_url,
        nats_server.url,
        # Polling too slow for the feature's pace: each replica keeps up through the bus's status feed.
        {"LLM_SCRIPT": str(scripts), "SF_STREAM_POLL_SECONDS": "30"},
    )
    a = cluster.start("gateway", "gateway-a")
    b = cluster.start("gateway", "gateway-b")
    for service in ("worker", "reviewer", "executor"):
        cluster.start(service)
    try:
        cluster.wait_ready()
        asyncio.run(_scenario(a.url, b.url, headers, origin))
    finally:
        codes = cluster.stop()
    assert codes == dict.fromkeys(codes, 0)
