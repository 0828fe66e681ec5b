"""Reads and writes of features and their logs. Each function works inside the caller's transaction, so a
state change, its event-log entry and the events it causes commit together or not at all; `admit_feature`,
the gateway's hot path, is all or nothing on its own."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from service_feature.events import (
    ClosureRequested,
    DeliveryRequested,
    Envelope,
    Event,
    FeatureRequested,
    StatusChanged,
    Subjects,
)
from service_feature.lifecycle import FeatureStatus, transition
from service_feature.models import FeatureRequest
from service_feature.store.database import Database
from service_feature.store.tables import (
    Execution,
    Feature,
    FeatureEvent,
    OpenFeatureCount,
    OutboxMessage,
    Patch,
    ProcessedMessage,
    Review,
    TranscriptEntry,
    utcnow,
)


async def find_feature(session: AsyncSession, execution_id: str) -> Feature | None:
    return await session.get(Feature, execution_id)


async def create_feature(
    session: AsyncSession, request: FeatureRequest, *, announce: bool = True, submitted_by: str | None = None
) -> Feature:
    """Insert a queued feature and log it; with `announce`, queue its request event in the same transaction
    (not when the request arrived on the bus already). `submitted_by`: the API key's id, if any."""
    feature = Feature(**new_feature_values(request, submitted_by, utcnow()))
    session.add(feature)
    append_event(session, request.execution_id, ACCEPTED, FeatureStatus.queued, {})
    if announce:
        add_outbox(session, Subjects.FEATURE_REQUESTS, request_envelope(request))
    await session.flush()
    return feature


ACCEPTED = "feature.accepted"  # the event-log entry of a feature's creation


def new_feature_values(request: FeatureRequest, submitted_by: str | None, now: datetime) -> dict[str, Any]:
    """The columns of a feature just accepted, queued, nothing spent on it yet."""
    return {
        "execution_id": request.execution_id,
        "submitted_by": submitted_by,
        "status": FeatureStatus.queued.value,
        "request": request.model_dump(mode="json"),
        "repository_url": request.repository_url,
        "base_branch": request.branch,
        "title": request.specification.title,
        "attempts": 0,
        "agent_turns": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_input_tokens": 0,
        "cost_usd": 0.0,
        "created_at": now,
        "updated_at": now,
        "version": 1,  # what the ORM's optimistic locking starts from
    }


def request_envelope(request: FeatureRequest) -> Envelope:
    """The request's event, its id derived from the execution_id: a repeated publish is one message."""
    event = FeatureRequested(request=request)
    return Envelope.of(request.execution_id, event, event_id=f"request-{request.execution_id}")


@dataclass(frozen=True)
class Admission:
    """What a submission came to: the feature created, or what stood in its way."""

    feature: Feature | None  # None: not created
    taken: bool  # the execution_id named a feature already
    open_features: int  # the key's features not yet ended, before this submission


async def admit_feature(
    database: Database, request: FeatureRequest, *, submitted_by: str, max_open: int
) -> Admission:
    """Create a queued feature with its log entry and its request event, unless the execution_id is taken
    or the key already has `max_open` features that have not ended. All or nothing: one statement on
    PostgreSQL (one round trip, no transaction held open across round trips), one transaction on SQLite.
    A submission racing another with the same execution_id comes back neither created nor taken: the
    unique key refused it."""
    values = new_feature_values(request, submitted_by, utcnow())
    envelope = request_envelope(request).to_json()
    if database.is_postgres:
        return await _admit_in_one_statement(database, values, envelope, max_open)
    return await _admit_in_one_transaction(database, values, envelope, max_open)


# The feature, its log entry and its outbox row in one statement (data-modifying CTEs), which also reads
# the key's open count and whether the id is taken. Plain SQL on the driver's connection: this is the
# gateway's hot path, and building and compiling the equivalent Core statement cost more than running it.
# Its literals are `FeatureStatus.queued`, `ACCEPTED` and `Subjects.FEATURE_REQUESTS`.
_ADMIT_SQL = """
WITH admitted AS (
    SELECT coalesce(
        (SELECT open_features FROM open_feature_counts WHERE submitted_by = $2::varchar), 0
    ) AS open_now
), created AS (
    INSERT INTO features (
        execution_id, submitted_by, status, request, repository_url, base_branch, title, attempts,
        agent_turns, input_tokens, output_tokens, cached_input_tokens, cost_usd, created_at, updated_at,
        version
    )
    SELECT $1::varchar, $2::varchar, 'queued', $3::json, $4::text, $5::varchar,
        $6::varchar, 0, 0, 0, 0, 0, 0.0, $7::timestamptz, $7::timestamptz, 1
    FROM admitted WHERE open_now < $8::integer
    ON CONFLICT (execution_id) DO NOTHING
    RETURNING execution_id
), logged AS (
    INSERT INTO feature_events (execution_id, type, status, detail, created_at)
    SELECT execution_id, 'feature.accepted', 'queued', '{}'::json, $7::timestamptz
    FROM created
), queued AS (
    INSERT INTO outbox (subject, envelope, created_at)
    SELECT 'feature.requests', $9::json, $7::timestamptz FROM created
)
SELECT admitted.open_now, created.execution_id IS NOT NULL AS created,
    EXISTS (SELECT 1 FROM features WHERE execution_id = $1::varchar) AS taken
FROM admitted LEFT JOIN created ON true
"""


async def _admit_in_one_statement(
    database: Database, values: dict[str, Any], envelope: dict[str, Any], max_open: int
) -> Admission:
    """PostgreSQL: `_ADMIT_SQL`, atomic on its own, so run outside any transaction (autocommit)."""
    arguments = (
        values["execution_id"],
        values["submitted_by"],
        json.dumps(values["request"]),
        values["repository_url"],
        values["base_branch"],
        values["title"],
        values["created_at"],
        max_open,
        json.dumps(envelope),
    )
    async with database.engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None, "a pooled connection is open"
        row = await driver.fetchrow(_ADMIT_SQL, *arguments)
    if row["created"]:
        return Admission(Feature(**values), False, int(row["open_now"]))
    return Admission(None, bool(row["taken"]), int(row["open_now"]))


async def _admit_in_one_transaction(
    database: Database, values: dict[str, Any], envelope: dict[str, Any], max_open: int
) -> Admission:
    """SQLite: the same writes as `_ADMIT_SQL`, as Core statements in one transaction (SQLite has no
    data-modifying CTEs; its round trips stay in this process)."""
    open_now = func.coalesce(
        select(OpenFeatureCount.open_features)
        .where(OpenFeatureCount.submitted_by == values["submitted_by"])
        .scalar_subquery(),
        0,
    )
    execution_id = values["execution_id"]
    async with database.engine.begin() as connection:
        open_features = int((await connection.execute(select(open_now))).scalar_one())
        if open_features >= max_open:
            taken = await connection.execute(select(exists().where(Feature.execution_id == execution_id)))
            return Admission(None, bool(taken.scalar_one()), open_features)
        created = await connection.execute(
            sqlite_insert(Feature).values(values).on_conflict_do_nothing().returning(Feature.execution_id)
        )
        if created.one_or_none() is None:
            return Admission(None, True, open_features)
        now = values["created_at"]
        accepted = {"execution_id": execution_id, "type": ACCEPTED, "status": FeatureStatus.queued.value}
        await connection.execute(insert(FeatureEvent).values(**accepted, detail={}, created_at=now))
        queued = {"subject": Subjects.FEATURE_REQUESTS, "envelope": envelope, "created_at": now}
        await connection.execute(insert(OutboxMessage).values(queued))
    return Admission(Feature(**values), False, open_features)


async def list_features(
    session: AsyncSession,
    *,
    status: FeatureStatus | None,
    limit: int,
    offset: int,
    submitted_by: str | None = None,
) -> tuple[Sequence[Feature], int]:
    """A page of features, newest first; with `submitted_by`, only that API key's."""
    query = select(Feature)
    counter = select(func.count()).select_from(Feature)
    if status is not None:
        query = query.where(Feature.status == status.value)
        counter = counter.where(Feature.status == status.value)
    if submitted_by is not None:
        query = query.where(Feature.submitted_by == submitted_by)
        counter = counter.where(Feature.submitted_by == submitted_by)
    rows = (
        await session.execute(query.order_by(Feature.created_at.desc()).limit(limit).offset(offset))
    ).scalars()
    total = (await session.execute(counter)).scalar_one()
    return list(rows), int(total)


async def count_open_features(session: AsyncSession, submitted_by: str) -> int:
    """Features of one API key that have not ended (queued or in progress), as the database's triggers
    keep count of them (migration 0006): one row to read, however many the key has."""
    query = select(OpenFeatureCount.open_features).where(OpenFeatureCount.submitted_by == submitted_by)
    return int(await session.scalar(query) or 0)


def move(
    session: AsyncSession,
    feature: Feature,
    target: FeatureStatus,
    *,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Apply one state-machine transition, log it, and publish it on the status feed."""
    step = transition(FeatureStatus(feature.status), target, reason)
    feature.status = target.value
    session.info.setdefault("transitions", []).append(target.value)
    if target is FeatureStatus.failed or target is FeatureStatus.rejected:
        feature.failure_reason = reason
    data = {"from": step.source.value, **({"reason": reason} if reason else {}), **(detail or {})}
    append_event(session, feature.execution_id, step.event_type, target, data)
    status = StatusChanged.model_validate({"status": target.value, **data})
    add_outbox(session, Subjects.status(feature.execution_id), Envelope.of(feature.execution_id, status))


def append_event(
    session: AsyncSession, execution_id: str, event_type: str, status: FeatureStatus, detail: dict[str, Any]
) -> None:
    session.add(FeatureEvent(execution_id=execution_id, type=event_type, status=status.value, detail=detail))


def request_delivery(session: AsyncSession, feature: Feature, *, draft: bool = False) -> None:
    """Queue the delivery of the feature's current attempt: after the reviewer's approval or a person's;
    `draft`, while a person decides (pull-request delivery opens the pull request as a draft)."""
    emit(session, feature.execution_id, DeliveryRequested(attempt=feature.attempts, draft=draft))


def request_closure(session: AsyncSession, feature: Feature, reason: str) -> None:
    """The feature ended undelivered: its pull request, if one was opened, is closed with the reason."""
    emit(session, feature.execution_id, ClosureRequested(reason=reason))


def add_outbox(session: AsyncSession, subject: str, envelope: Envelope) -> None:
    session.add(OutboxMessage(subject=subject, envelope=envelope.to_json()))


def emit(session: AsyncSession, execution_id: str, event: Event) -> None:
    """The next step's event, sent on its subject by the outbox once this transaction commits."""
    add_outbox(session, event.subject, Envelope.of(execution_id, event))


async def claim_message(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Record that `consumer` handles `event_id`; False when it already did (a redelivery)."""
    values = {"consumer": consumer, "event_id": event_id}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = await session.execute(insert(ProcessedMessage).values(**values).on_conflict_do_nothing())
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def was_processed(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Whether `consumer` already handled `event_id`: lets a redelivery skip expensive work up front."""
    return await session.get(ProcessedMessage, (consumer, event_id)) is not None


async def events_of(session: AsyncSession, execution_id: str) -> Sequence[FeatureEvent]:
    query = select(FeatureEvent).where(FeatureEvent.execution_id == execution_id).order_by(FeatureEvent.id)
    return list((await session.execute(query)).scalars())


async def latest_patch(session: AsyncSession, execution_id: str) -> Patch | None:
    query = select(Patch).where(Patch.execution_id == execution_id).order_by(Patch.attempt.desc()).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def patch_for(session: AsyncSession, execution_id: str, attempt: int) -> Patch | None:
    query = select(Patch).where(Patch.execution_id == execution_id, Patch.attempt == attempt)
    return (await session.execute(query)).scalar_one_or_none()


async def execution_for(session: AsyncSession, execution_id: str, attempt: int) -> Execution | None:
    query = select(Execution).where(Execution.execution_id == execution_id, Execution.attempt == attempt)
    return (await session.execute(query)).scalar_one_or_none()


async def latest_review(session: AsyncSession, execution_id: str) -> Review | None:
    query = select(Review).where(Review.execution_id == execution_id).order_by(Review.id.desc()).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def transcript_of(session: AsyncSession, execution_id: str) -> Sequence[TranscriptEntry]:
    query = (
        select(TranscriptEntry)
        .where(TranscriptEntry.execution_id == execution_id)
        .order_by(TranscriptEntry.id)
    )
    return list((await session.execute(query)).scalars())


async def fail_feature(session: AsyncSession, execution_id: str, reason: str) -> bool:
    """Move a feature that has not ended to `failed`; False when it had ended already (or is unknown)."""
    feature = await find_feature(session, execution_id)
    if feature is None or FeatureStatus(feature.status).is_terminal:
        return False
    move(session, feature, FeatureStatus.failed, reason=reason)
    return True
