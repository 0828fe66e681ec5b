"""Live event streams (Server-Sent Events): one feature's events, or every visible feature's.

    GET /api/v1/features/{execution_id}/stream   one feature's log, from its first event; ends after the
                                                 feature's terminal event (unless `keep_open=true`)
    GET /api/v1/events/stream                    every feature the key may see, from now on; never ends

Each entry of the event log (`feature_events`) is one message:

    id: 42
    event: status
    data: {"execution_id": "...", "id": 42, "type": "status.testing", "status": "testing", ...}

`data` is the entry as `GET /api/v1/features/{id}/events` returns it, plus its `execution_id`. A feature's
stream ends with `event: end` (`data: {"execution_id": ..., "status": ...}`, no id); a reconnect after the
end gets 204, which tells a browser's EventSource to stop reconnecting. Heartbeats are comment lines
(`: heartbeat`). See docs/streams.md.

The database is the source of truth, so any replica serves any stream: a stream reads the log in pages
of ids after the last one sent (`Last-Event-ID`, or `?last_event_id=` for clients that cannot set headers).
A slow client holds one page in memory at most and reads the next from the store when it gets there: it
never overflows, however far behind it falls. Between pages a stream waits for a wake-up from the bus's
status feed (`status.feature.<id>`), or for the poll interval, which also covers entries the feed does not
announce and a process without a bus.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the parameter annotations.
import asyncio
import contextlib
import json
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse, ServerSentEvent

from service_feature.auth import Principal
from service_feature.bus.base import Bus
from service_feature.events import Subjects
from service_feature.gateway.deps import AnyoneDep, Gateway, GatewayDep
from service_feature.gateway.route import GatewayRoute
from service_feature.gateway.schemas import EventOut
from service_feature.lifecycle import FeatureStatus
from service_feature.models import ExecutionId
from service_feature.store.database import Database
from service_feature.store.tables import Feature, FeatureEvent

log = structlog.get_logger(__name__)

streams_router = APIRouter(prefix="/api/v1", tags=["streams"], route_class=GatewayRoute)

EVENT_NAME = "status"
END_EVENT_NAME = "end"
HEARTBEAT = "heartbeat"
# The newest ids of the whole log a stream inspects for gaps (see `Gaps`); older ones count as settled.
TAIL_ROWS = 1000
# How soon a stream looks again when it held entries back behind a gap: the gap is usually a transaction
# committing a moment later.
GAP_RECHECK_SECONDS = 0.1
# A new subscription is active once the bus's server has it: publications racing with that go unseen,
# so for this long after subscribing streams look again at the GAP_RECHECK_SECONDS pace.
FRESH_SUBSCRIPTION_SECONDS = 1.0


class StreamSettings(BaseSettings):
    """How streams behave; per process from the environment, or per app through FastAPI's
    `dependency_overrides[stream_settings]`."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    heartbeat_seconds: float = Field(15.0, alias="SF_STREAM_HEARTBEAT_SECONDS", gt=0)
    poll_seconds: float = Field(1.0, alias="SF_STREAM_POLL_SECONDS", gt=0)
    page_size: int = Field(100, alias="SF_STREAM_PAGE_SIZE", ge=1, le=10_000)
    settle_seconds: float = Field(5.0, alias="SF_STREAM_SETTLE_SECONDS", ge=0)
    send_timeout_seconds: float = Field(60.0, alias="SF_STREAM_SEND_TIMEOUT_SECONDS", gt=0)


async def stream_settings() -> StreamSettings:
    return StreamSettings()


StreamSettingsDep = Annotated[StreamSettings, Depends(stream_settings)]
LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID")]
LastEventIdQuery = Annotated[int | None, Query(ge=0, le=2**63 - 1)]


# -- wake-ups from the bus ---------------------------------------------------------------------------------


class Wakeups:
    """The process's streams woken by the bus's status feed: one subscription per bus, fanned out to every
    waiting stream (a feature's stream only for its own feature). A wake-up only says "read the store":
    a lost one costs a poll interval, never an event."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._waiters: dict[asyncio.Event, str | None] = {}
        self._listening_since: float | None = None
        self._lock = asyncio.Lock()

    @property
    def fresh(self) -> bool:
        """Subscribed just now: a change published meanwhile may have woken no one."""
        since = self._listening_since
        return since is not None and time.monotonic() - since < FRESH_SUBSCRIPTION_SECONDS

    async def register(self, waiter: asyncio.Event, execution_id: str | None) -> None:
        await self._listen()
        self._waiters[waiter] = execution_id

    def unregister(self, waiter: asyncio.Event) -> None:
        self._waiters.pop(waiter, None)

    async def _listen(self) -> None:
        async with self._lock:
            if self._listening_since is not None:
                return
            try:
                await self._bus.listen(f"{Subjects.STATUS_PREFIX}.>", self._receive)
            except Exception as error:  # the streams poll meanwhile; the next stream tries again
                log.warning("streams.bus_unavailable", error=str(error))
                return
            self._listening_since = time.monotonic()

    async def _receive(self, data: bytes) -> None:
        try:
            execution_id = json.loads(data).get("execution_id")
        except (ValueError, AttributeError):
            execution_id = None  # unreadable: wake every stream, the store will tell
        for waiter, wanted in list(self._waiters.items()):
            if wanted is None or execution_id is None or wanted == execution_id:
                waiter.set()


_wakeups: "weakref.WeakKeyDictionary[Bus, Wakeups]" = weakref.WeakKeyDictionary()


def wakeups_of(gateway: Gateway) -> Wakeups | None:
    """The wake-ups of the gateway's bus, created on first use; None without a bus (polling only)."""
    if gateway.bus is None:
        return None
    if (found := _wakeups.get(gateway.bus)) is None:
        found = _wakeups[gateway.bus] = Wakeups(gateway.bus)
    return found


@dataclass
class Closing:
    """The open streams of one gateway (one Database), so that a shutting-down gateway can end them."""

    closed: bool = False
    waiters: set[asyncio.Event] = field(default_factory=set)


_closings: "weakref.WeakKeyDictionary[Database, Closing]" = weakref.WeakKeyDictionary()


def closing_of(database: Database) -> Closing:
    if (found := _closings.get(database)) is None:
        found = _closings[database] = Closing()
    return found


def close_streams(database: Database) -> None:
    """End every open stream over `database` at once, each with a complete response: for a gateway about
    to stop, before its HTTP server does (which would otherwise wait its graceful timeout for them, then
    cut them). Clients resume on another replica with Last-Event-ID. Streams opened afterwards end at once."""
    closing = closing_of(database)
    closing.closed = True
    for waiter in closing.waiters:
        waiter.set()


# -- reading the log ---------------------------------------------------------------------------------------


@dataclass
class Gaps:
    """Ids missing from the log that a transaction may still commit.

    Ids are handed out when a row is inserted, not when it commits: on PostgreSQL a transaction holding
    id 41 may commit after another's 42. A stream that sent 42 and moved on would never send 41, and a
    client resuming after 42 would miss it too. So a stream sends nothing past a missing id until the id
    appears or the gap settles: `settle_seconds` after the stream first saw it, or once the entry after it
    is that old (an id rolled back for good). SQLite commits one writer at a time, so it has no such gaps.
    """

    settle_seconds: float
    first_seen: dict[int, float] = field(default_factory=dict)

    def horizon(self, after: int, tail: Sequence[tuple[int, datetime]], complete: bool) -> int | None:
        """The highest id below which nothing can still appear; None when nothing is held back. `tail`:
        the newest ids after `after`, ascending; `complete` when it holds all of them."""
        now, wall = time.monotonic(), datetime.now(UTC)
        previous = after if complete or not tail else tail[0][0] - 1
        for event_id, created_at in tail:
            if event_id > previous + 1 and not self._settled(event_id, created_at, now, wall):
                self._forget(after)
                return previous
            previous = event_id
        self._forget(after)
        return None

    def _settled(self, event_id: int, created_at: datetime, now: float, wall: datetime) -> bool:
        first = self.first_seen.setdefault(event_id, now)
        settle = self.settle_seconds
        return now - first >= settle or wall - created_at >= timedelta(seconds=settle)

    def _forget(self, after: int) -> None:
        self.first_seen = {key: seen for key, seen in self.first_seen.items() if key > after}


@dataclass(frozen=True)
class Page:
    events: Sequence[FeatureEvent]
    full: bool  # more may follow at once
    held_back: bool  # entries wait behind a gap
    ended_as: str | None  # the feature's terminal status, once everything up to it was read


@dataclass
class LogReader:
    """Pages of the event log after `after`: one feature's (`execution_id`), or every feature's (of one
    submitter, with `owner`)."""

    database: Database
    settings: StreamSettings
    after: int
    execution_id: str | None = None
    owner: str | None = None
    gaps: Gaps = field(init=False)

    def __post_init__(self) -> None:
        self.gaps = Gaps(self.settings.settle_seconds)

    async def next_page(self) -> Page:
        async with self.database.transaction() as session:
            # The feature's status first: its terminal event committed with it, so the read below sees it.
            current = await self._status(session)
            horizon = await self._horizon(session)
            events = await self._events(session, horizon)
        full = len(events) >= self.settings.page_size
        ended = current is not None and FeatureStatus(current).is_terminal and not full and horizon is None
        return Page(events, full, horizon is not None, current if ended else None)

    async def _status(self, session: AsyncSession) -> str | None:
        if self.execution_id is None:
            return None
        query = select(Feature.status).where(Feature.execution_id == self.execution_id)
        return (await session.execute(query)).scalar_one_or_none()

    async def _horizon(self, session: AsyncSession) -> int | None:
        query = (
            select(FeatureEvent.id, FeatureEvent.created_at)
            .where(FeatureEvent.id > self.after)
            .order_by(FeatureEvent.id.desc())
            .limit(TAIL_ROWS)
        )
        tail = [(row.id, row.created_at) for row in (await session.execute(query)).all()][::-1]
        return self.gaps.horizon(self.after, tail, complete=len(tail) < TAIL_ROWS)

    async def _events(self, session: AsyncSession, horizon: int | None) -> Sequence[FeatureEvent]:
        query = select(FeatureEvent).where(FeatureEvent.id > self.after)
        if horizon is not None:
            query = query.where(FeatureEvent.id <= horizon)
        if self.execution_id is not None:
            query = query.where(FeatureEvent.execution_id == self.execution_id)
        elif self.owner is not None:
            query = query.join(Feature, Feature.execution_id == FeatureEvent.execution_id).where(
                Feature.submitted_by == self.owner
            )
        query = query.order_by(FeatureEvent.id).limit(self.settings.page_size)
        return list((await session.execute(query)).scalars())


async def newest_event_id(database: Database) -> int:
    async with database.transaction() as session:
        return int((await session.execute(select(func.max(FeatureEvent.id)))).scalar_one() or 0)


# -- messages --------------------------------------------------------------------------------------------


def event_message(event: FeatureEvent) -> ServerSentEvent:
    data = {"execution_id": event.execution_id, **EventOut.of(event).model_dump(mode="json")}
    return ServerSentEvent(data=json.dumps(data, separators=(",", ":")), event=EVENT_NAME, id=str(event.id))


def end_message(execution_id: str, final: str) -> ServerSentEvent:
    data = json.dumps({"execution_id": execution_id, "status": final}, separators=(",", ":"))
    return ServerSentEvent(data=data, event=END_EVENT_NAME)


def heartbeat() -> ServerSentEvent:
    return ServerSentEvent(comment=HEARTBEAT)


@dataclass
class EventStream:
    """One client's stream: pages from the store, woken by the bus or the poll interval."""

    reader: LogReader
    wakeups: Wakeups | None
    keep_open: bool = False

    async def messages(self) -> AsyncIterator[ServerSentEvent]:
        waiter = asyncio.Event()
        closing = closing_of(self.reader.database)
        closing.waiters.add(waiter)
        try:
            if self.wakeups is not None:
                await self.wakeups.register(waiter, self.reader.execution_id)
            while not closing.closed:
                page = await self.reader.next_page()
                for event in page.events:
                    yield event_message(event)
                    self.reader.after = event.id
                if page.ended_as is not None and not self.keep_open:
                    assert self.reader.execution_id is not None  # only a feature's stream ends
                    yield end_message(self.reader.execution_id, page.ended_as)
                    return
                if not page.full:
                    await self._wait(waiter, GAP_RECHECK_SECONDS if page.held_back else None)
        finally:
            # Runs when the client goes away or the server cancels the response, too.
            closing.waiters.discard(waiter)
            if self.wakeups is not None:
                self.wakeups.unregister(waiter)

    async def _wait(self, waiter: asyncio.Event, seconds: float | None) -> None:
        """Until the bus says something changed, the gateway closes, or the time is up."""
        poll = self.reader.settings.poll_seconds
        if seconds is None and self.wakeups is not None and self.wakeups.fresh:
            seconds = GAP_RECHECK_SECONDS
        timeout = min(seconds or poll, poll)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), timeout)
        waiter.clear()


def respond(stream: EventStream, settings: StreamSettings) -> EventSourceResponse:
    return EventSourceResponse(
        stream.messages(),
        ping=settings.heartbeat_seconds,
        ping_message_factory=heartbeat,
        send_timeout=settings.send_timeout_seconds,
    )


def resume_point(header: str | None, query: int | None) -> int | None:
    """Where to resume: the `Last-Event-ID` header, else `?last_event_id=`. The header wins: a browser
    reconnects with the URL it started with plus the header of the last message it received."""
    if header is None or not header.strip():
        return query
    try:
        value = int(header.strip())
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="Last-Event-ID must be a non-negative integer"
        )
    return value


async def check_visible(database: Database, execution_id: str, principal: Principal) -> None:
    """A 404 exactly as the other feature routes give it, for an unknown feature and another key's."""
    # Imported here: gateway.routes imports this module to include its router.
    from service_feature.gateway.routes import find_visible

    async with database.transaction() as session:
        await find_visible(session, execution_id, principal)


# -- routes ----------------------------------------------------------------------------------------------

# Not in the OpenAPI schema: a response that may never end is no request-response operation, and a
# schema-driven client (a fuzzer, a generated SDK) would wait on it forever. docs/streams.md documents them.


@streams_router.get("/features/{execution_id}/stream", include_in_schema=False)
async def feature_stream(
    execution_id: ExecutionId,
    principal: AnyoneDep,
    gateway: GatewayDep,
    settings: StreamSettingsDep,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    keep_open: Annotated[bool, Query()] = False,
) -> Response:
    """One feature's events, from the first or from after `Last-Event-ID`; the stream ends after the
    feature's terminal event (`event: end`) unless `keep_open`."""
    await check_visible(gateway.database, execution_id, principal)
    after = resume_point(last_event_id_header, last_event_id) or 0
    reader = LogReader(gateway.database, settings, after, execution_id=execution_id)
    if not keep_open:
        first = await reader.next_page()
        if first.ended_as is not None and not first.events:
            # Nothing more will come: 204 stops a browser's EventSource from reconnecting.
            return Response(status_code=status.HTTP_204_NO_CONTENT)
    stream = EventStream(reader, wakeups_of(gateway), keep_open=keep_open)
    return respond(stream, settings)


@streams_router.get("/events/stream", include_in_schema=False)
async def events_stream(
    principal: AnyoneDep,
    gateway: GatewayDep,
    settings: StreamSettingsDep,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> Response:
    """Every visible feature's events (a submitter key's own features only), from now on or from after
    `Last-Event-ID` (`?last_event_id=0` replays the whole log)."""
    after = resume_point(last_event_id_header, last_event_id)
    if after is None:
        after = await newest_event_id(gateway.database)
    owner = None if principal.sees_all_features else principal.key_id
    reader = LogReader(gateway.database, settings, after, owner=owner)
    return respond(EventStream(reader, wakeups_of(gateway)), settings)
