"""The stream's pieces without a server: where a stream resumes, which ids it holds back behind a gap,
what a message looks like, how the command line reads messages back, and which streams the bus wakes."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException

from service_feature.bus.base import Listener
from service_feature.follow import StreamMessage, stream_messages
from service_feature.gateway.streams import Gaps, Wakeups, end_message, event_message, resume_point
from service_feature.store.tables import FeatureEvent

OLD = datetime.now(UTC) - timedelta(hours=1)


def test_the_header_wins_over_the_query_parameter() -> None:
    assert resume_point("42", 7) == 42
    assert resume_point(None, 7) == 7
    assert resume_point(" ", 7) == 7
    assert resume_point(None, None) is None


@pytest.mark.parametrize("header", ["x", "-1", "1.5", str(2**63)])
def test_a_last_event_id_that_is_no_id_is_refused(header: str) -> None:
    with pytest.raises(HTTPException) as refused:
        resume_point(header, None)
    assert refused.value.status_code == 400


def test_contiguous_ids_hold_nothing_back() -> None:
    now = datetime.now(UTC)
    assert Gaps(5.0).horizon(10, [(11, now), (12, now)], complete=True) is None


def test_a_fresh_gap_holds_back_what_follows_it() -> None:
    now = datetime.now(UTC)
    gaps = Gaps(60.0)
    assert gaps.horizon(10, [(11, now), (13, now), (14, now)], complete=True) == 11
    assert gaps.horizon(10, [(11, now), (12, now), (13, now), (14, now)], complete=True) is None


def test_a_gap_right_after_the_cursor_holds_everything_back() -> None:
    now = datetime.now(UTC)
    assert Gaps(60.0).horizon(10, [(12, now)], complete=True) == 10


def test_a_gap_settles_once_the_entry_after_it_is_old() -> None:
    assert Gaps(60.0).horizon(10, [(11, OLD), (13, OLD)], complete=True) is None


def test_a_gap_settles_after_the_settle_time() -> None:
    now = datetime.now(UTC)
    gaps = Gaps(0.0)
    assert gaps.horizon(10, [(13, now)], complete=True) is None


def test_an_incomplete_tail_starts_after_its_first_id() -> None:
    now = datetime.now(UTC)
    assert Gaps(60.0).horizon(10, [(500, now), (501, now)], complete=False) is None
    assert Gaps(60.0).horizon(10, [(500, now), (502, now)], complete=False) == 500


def test_an_event_message_carries_the_log_entry() -> None:
    event = FeatureEvent(
        id=42,
        execution_id="f1",
        type="status.testing",
        status="testing",
        detail={"from": "generating", "attempt": 1},
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    encoded = event_message(event).encode().decode()
    assert encoded == (
        "id: 42\r\nevent: status\r\n"
        'data: {"execution_id":"f1","id":42,"type":"status.testing","status":"testing",'
        '"detail":{"from":"generating","attempt":1},"created_at":"2026-01-02T03:04:05Z"}\r\n\r\n'
    )
    assert end_message("f1", "delivered").encode().decode() == (
        'event: end\r\ndata: {"execution_id":"f1","status":"delivered"}\r\n\r\n'
    )


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_the_client_reads_messages_and_skips_heartbeats() -> None:
    lines = _lines(
        ": heartbeat",
        "",
        "id: 1",
        "event: status",
        'data: {"a": 1}',
        "",
        "data:two",
        "data: lines",
        "",
        "event: end",
        "data: {}",
        "",
    )
    messages = [message async for message in stream_messages(lines)]
    assert messages == [
        StreamMessage("status", '{"a": 1}', "1"),
        StreamMessage("message", "two\nlines", "1"),
        StreamMessage("end", "{}", "1"),
    ]


class FakeBus:
    """Only what the wake-ups use: `listen`."""

    def __init__(self) -> None:
        self.listened: list[tuple[str, Listener]] = []

    async def listen(self, subject: str, listener: Listener) -> None:
        self.listened.append((subject, listener))


async def test_the_status_feed_wakes_the_streams_it_concerns() -> None:
    bus = FakeBus()
    wakeups = Wakeups(bus)  # type: ignore[arg-type]
    one, other, every = asyncio.Event(), asyncio.Event(), asyncio.Event()
    await wakeups.register(one, "f1")
    await wakeups.register(other, "f2")
    await wakeups.register(every, None)
    assert [subject for subject, _ in bus.listened] == ["status.feature.>"]  # one subscription for all
    assert wakeups.fresh

    _, listener = bus.listened[0]
    await listener(json.dumps({"execution_id": "f1", "type": "status.changed"}).encode())
    assert (one.is_set(), other.is_set(), every.is_set()) == (True, False, True)

    wakeups.unregister(every)
    every.clear()
    await listener(b"not json")  # unreadable: every stream reads the store
    assert (other.is_set(), every.is_set()) == (True, False)
