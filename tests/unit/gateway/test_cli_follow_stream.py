"""`service-feature logs --follow` reads a feature's stream until the end: a dropped connection resumes
after the last event received (Last-Event-ID), so nothing is missed or repeated."""

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from service_feature.follow import StreamRefused, stream_feature_events


def _event(event_id: int, status: str) -> bytes:
    data = {"execution_id": "f1", "id": event_id, "type": f"status.{status}", "status": status}
    return f"id: {event_id}\r\nevent: status\r\ndata: {json.dumps(data)}\r\n\r\n".encode()


class Dropped(httpx.AsyncByteStream):
    """A body that breaks off after its chunks, as a connection cut mid-stream does."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


async def _read(transport: httpx.MockTransport, reconnects: int = 10) -> list[int]:
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        events = stream_feature_events(client, "f1", reconnects=reconnects, reconnect_wait=0)
        return [event["id"] async for event in events]


async def test_a_dropped_stream_resumes_after_the_last_event() -> None:
    asked: list[str | None] = []

    def serve(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("Last-Event-ID"))
        headers = {"content-type": "text/event-stream"}
        if len(asked) == 1:
            return httpx.Response(
                200, headers=headers, stream=Dropped(_event(1, "queued"), _event(2, "testing"))
            )
        if len(asked) == 2:
            return httpx.Response(200, headers=headers, stream=Dropped(b": heartbeat\r\n\r\n"))
        if len(asked) == 3:  # closed cleanly, but before the feature's end
            return httpx.Response(200, headers=headers, content=b": heartbeat\r\n\r\n")
        end = b'event: end\r\ndata: {"execution_id":"f1","status":"delivered"}\r\n\r\n'
        return httpx.Response(200, headers=headers, content=_event(3, "delivered") + end)

    assert await _read(httpx.MockTransport(serve)) == [1, 2, 3]
    assert asked == [None, "2", "2", "2"]


async def test_a_stream_that_already_ended_yields_nothing() -> None:
    assert await _read(httpx.MockTransport(lambda request: httpx.Response(204))) == []


async def test_a_refusal_carries_the_gateways_detail() -> None:
    refuse = httpx.MockTransport(
        lambda request: httpx.Response(404, json={"detail": "feature 'f1' not found"})
    )
    with pytest.raises(StreamRefused) as refused:
        await _read(refuse)
    assert (refused.value.status_code, refused.value.detail) == (404, "feature 'f1' not found")


async def test_it_gives_up_after_drops_in_a_row() -> None:
    asked: list[int] = []

    def drop(request: httpx.Request) -> httpx.Response:
        asked.append(1)
        return httpx.Response(200, stream=Dropped())

    with pytest.raises(httpx.RemoteProtocolError):
        await _read(httpx.MockTransport(drop), reconnects=2)
    assert len(asked) == 3
