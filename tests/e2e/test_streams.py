"""The live event streams of the embedded platform: a feature's stream from submission to delivery, a
reconnect with Last-Event-ID that misses and repeats nothing, who may read which stream, the global
stream, heartbeats, and streams open while the gateway shuts down."""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_feature.auth import Role
from service_feature.follow import StreamMessage, stream_messages
from service_feature.gateway.streams import close_streams
from tests.support.platform import feature_request, greeting_turns, running_platform, write_script

STATUSES = ["checking_out", "preparing", "generating", "testing", "reviewing", "delivering", "delivered"]
Stop = Callable[[list[StreamMessage]], bool]


async def read_stream(
    client: httpx.AsyncClient,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    stop: Stop | None = None,
    timeout: float = 120.0,
) -> list[StreamMessage]:
    """The stream's messages until the server ends it, or until `stop` says enough (then disconnect)."""
    messages: list[StreamMessage] = []
    async with (
        asyncio.timeout(timeout),
        client.stream("GET", path, headers=headers, params=params) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for message in stream_messages(response.aiter_lines()):
            messages.append(message)
            if stop is not None and stop(messages):
                break
    return messages


def after(count: int) -> Stop:
    return lambda messages: len(messages) >= count


def until_status(execution_id: str, wanted: str) -> Stop:
    def seen(messages: list[StreamMessage]) -> bool:
        last = json.loads(messages[-1].data)
        return bool(last["execution_id"] == execution_id and last["status"] == wanted)

    return seen


def events_in(messages: list[StreamMessage]) -> list[dict[str, Any]]:
    return [json.loads(message.data) for message in messages if message.event == "status"]


async def logged(client: httpx.AsyncClient, execution_id: str) -> list[dict[str, Any]]:
    """The feature's log as /events gives it, each entry with its execution_id as the streams add it."""
    events = (await client.get(f"/api/v1/features/{execution_id}/events")).json()["events"]
    return [{"execution_id": execution_id, **event} for event in events]


async def test_a_feature_is_streamed_to_delivery_and_resumed_without_gaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns(), latency_ms=200)
    # Polling too slow for the feature's pace: the streams keep up through the bus's status feed.
    async with running_platform(tmp_path, monkeypatch, scripts, SF_STREAM_POLL_SECONDS="30") as api:
        assert (await api.post("/api/v1/features", json=feature_request(origin, "live1"))).status_code == 202
        path = "/api/v1/features/live1/stream"
        whole, partial = await asyncio.gather(read_stream(api, path), read_stream(api, path, stop=after(3)))
        resumed = await read_stream(api, path, headers={"Last-Event-ID": partial[-1].id or ""})
        by_query = await read_stream(api, path, params={"last_event_id": partial[-1].id})

        log = await logged(api, "live1")
        assert [event["status"] for event in log if event["type"].startswith("status.")] == STATUSES
        assert events_in(whole) == log
        assert [message.id for message in whole if message.event == "status"] == [str(e["id"]) for e in log]
        assert events_in(partial) + events_in(resumed) == log  # nothing missed, nothing twice
        assert events_in(by_query) == events_in(resumed)
        for stream in (whole, resumed, by_query):
            assert (stream[-1].event, json.loads(stream[-1].data)) == (
                "end",
                {"execution_id": "live1", "status": "delivered"},
            )
        # The header wins over the query parameter: a browser reconnects with its first URL.
        both = await read_stream(
            api, path, headers={"Last-Event-ID": str(log[-2]["id"])}, params={"last_event_id": 0}
        )
        assert events_in(both) == log[-1:]
        ended = await api.get(path, headers={"Last-Event-ID": str(log[-1]["id"])})
        assert ended.status_code == 204  # an EventSource stops reconnecting
        refused = await api.get(path, headers={"Last-Event-ID": "latest"})
        assert refused.status_code == 400


async def test_keys_stream_only_what_they_may_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts, SF_STREAM_HEARTBEAT_SECONDS="0.2") as api:
        alice = await api.client_as(Role.submitter, "alice")
        bob = await api.client_as(Role.submitter, "bob")
        reader = await api.client_as(Role.reader, "reader")
        for client, execution_id in ((alice, "alice1"), (bob, "bob1")):
            response = await client.post("/api/v1/features", json=feature_request(origin, execution_id))
            assert response.status_code == 202
            assert (await client.post(f"/api/v1/features/{execution_id}/cancel")).status_code == 200

        unseen = await bob.get("/api/v1/features/alice1/stream")
        assert unseen.status_code == 404
        assert unseen.json() == (await bob.get("/api/v1/features/alice1")).json()
        assert (await bob.get("/api/v1/features/nobody/stream")).status_code == 404
        async with httpx.AsyncClient(base_url=api.base_url) as anonymous:
            for path in ("/api/v1/events/stream", "/api/v1/features/alice1/stream"):
                assert (await anonymous.get(path)).status_code == 401

        replay = {"last_event_id": 0}
        own = await read_stream(
            bob, "/api/v1/events/stream", params=replay, stop=until_status("bob1", "cancelled")
        )
        assert {event["execution_id"] for event in events_in(own)} == {"bob1"}
        assert events_in(own) == await logged(bob, "bob1")

        def both_cancelled(messages: list[StreamMessage]) -> bool:
            ended = {e["execution_id"] for e in events_in(messages) if e["status"] == "cancelled"}
            return ended == {"alice1", "bob1"}

        everything = await read_stream(reader, "/api/v1/events/stream", params=replay, stop=both_cancelled)
        ids = [event["id"] for event in events_in(everything)]
        assert ids == sorted(ids)
        assert {event["execution_id"] for event in events_in(everything)} == {"alice1", "bob1"}

        # From now on (no Last-Event-ID): what happens after connecting, woken as it happens. The start is
        # fixed before the response's headers are sent.
        async with asyncio.timeout(60), reader.stream("GET", "/api/v1/events/stream") as response:
            submitted = await alice.post("/api/v1/features", json=feature_request(origin, "alice2"))
            assert submitted.status_code == 202
            async for message in stream_messages(response.aiter_lines()):
                event = json.loads(message.data)
                assert event["execution_id"] in {"alice1", "bob1", "alice2"}
                if event["execution_id"] == "alice2":
                    assert event["type"] == "feature.accepted"
                    break

        # Nothing happens on a finished feature kept open: heartbeats keep the connection alive.
        async with (
            asyncio.timeout(60),
            alice.stream("GET", "/api/v1/features/alice1/stream", params={"keep_open": "true"}) as response,
        ):
            lines = [line async for line in _take_until_heartbeat(response)]
        assert lines[-1] == ": heartbeat"
        assert any(line.startswith("event: status") for line in lines)


async def _take_until_heartbeat(response: httpx.Response) -> Any:
    """The stream's lines up to the first heartbeat after an event."""
    seen_event = False
    async for line in response.aiter_lines():
        yield line
        seen_event = seen_event or line.startswith("event: status")
        if seen_event and line.startswith(":"):
            return


async def test_an_open_stream_does_not_hold_up_the_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    connected = asyncio.Event()

    async def hold(client: httpx.AsyncClient) -> list[str]:
        lines: list[str] = []
        async with client.stream("GET", "/api/v1/events/stream") as response:
            connected.set()
            try:
                async for line in response.aiter_lines():
                    lines.append(line)
            except httpx.HTTPError:
                pass  # cut off by the server: the client reconnects elsewhere with Last-Event-ID
        return lines

    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        client = httpx.AsyncClient(base_url=api.base_url, headers={"Authorization": f"Bearer {api.key}"})
        holder = asyncio.create_task(hold(client))
        async with asyncio.timeout(30):
            await connected.wait()
    # The platform stopped (leaving the block) although the stream was open; the stream ended with it.
    async with asyncio.timeout(30):
        await holder
    await client.aclose()


async def test_a_closing_gateway_ends_its_streams_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        assert api.platform.database is not None
        submitted = await api.post("/api/v1/features", json=feature_request(origin, "open1"))
        assert submitted.status_code == 202
        assert (await api.post("/api/v1/features/open1/cancel")).status_code == 200
        kept = {"keep_open": "true"}
        async with asyncio.timeout(60), api.stream("GET", "/api/v1/events/stream") as everything:
            async with api.stream("GET", "/api/v1/features/open1/stream", params=kept) as one:
                close_streams(api.platform.database)
                # Both responses complete (no error reading them), without an end: a client resumes
                # elsewhere with Last-Event-ID.
                messages = [message async for message in stream_messages(one.aiter_lines())]
                assert all(message.event == "status" for message in messages)
            assert [line async for line in everything.aiter_lines() if not line.startswith(":")] == []
        late = await read_stream(api, "/api/v1/features/open1/stream", params=kept)
        assert late == []  # opened after the close: ends at once
