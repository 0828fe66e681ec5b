"""Reads and writes of features and their logs. Each function works inside the caller's transaction, so a
state change, its event-log entry and the events it causes commit together or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
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
from service_feature.store.tables import (
    Execution,
    Feature,
    FeatureEvent,
    OutboxMessage,
    Patch,
    ProcessedMessage,
    Review,
    TranscriptEntry,
)


async def find_feature(session: AsyncSession, execution_id: str) -> Feature | None:
    return await session.get(Feature, execution_id)


async def create_feature(
    session: AsyncSession, request: FeatureRequest, *, announce: bool = True, submitted_by: str | None = None
) -> Feature:
    """Insert a queued feature and log it; with `announce`, queue its request event in the same transaction
    (not when the request arrived on the bus already). `submitted_by`: the API key's id, if any."""
    feature = Feature(
        execution_id=request.execution_id,
        submitted_by=submitted_by,
        status=FeatureStatus.queued.value,
        request=request.model_dump(mode="json"),
        repository_url=request.repository_url,
        base_branch=request.branch,
        title=request.specification.title,
        attempts=0,
        agent_turns=0,
        input_tokens=0,
        output_tokens=0,
        cached_input_tokens=0,
        cost_usd=0.0,
    )
    session.add(feature)
    append_event(session, request.execution_id, "feature.accepted", FeatureStatus.queued, {})
    if announce:
        event = FeatureRequested(request=request)
        add_outbox(
            session,
            event.subject,
            Envelope.of(request.execution_id, event, event_id=f"request-{request.execution_id}"),
        )
    await session.flush()
    return feature


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
    """Features of one API key that have not ended (queued or in progress)."""
    open_statuses = [s.value for s in FeatureStatus if not s.is_terminal]
    query = select(func.count()).select_from(Feature)
    query = query.where(Feature.submitted_by == submitted_by, Feature.status.in_(open_statuses))
    return int((await session.execute(query)).scalar_one())


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
