"""The dashboard's reads that the feature API has no function for: search, counts per status, the latest
test run. They take the caller's scope like the API's listing: a submitter key sees its own features."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from service_feature.auth import Principal
from service_feature.lifecycle import FeatureStatus
from service_feature.store.tables import Execution, Feature

PAGE_SIZE = 50


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """The features this key may see: every one for readers and admins, its own for a submitter."""
    if principal.sees_all_features:
        return true()
    return Feature.submitted_by == principal.key_id


async def search_features(
    session: AsyncSession,
    principal: Principal,
    *,
    status: FeatureStatus | None,
    text: str,
    offset: int,
) -> tuple[Sequence[Feature], int]:
    """A page of visible features, newest first, filtered by status and by `text` in the id or title."""
    query = select(Feature).where(visible_to(principal))
    if status is not None:
        query = query.where(Feature.status == status.value)
    if text:
        needle = text.lower()
        query = query.where(
            or_(
                func.lower(Feature.execution_id).contains(needle, autoescape=True),
                func.lower(Feature.title).contains(needle, autoescape=True),
            )
        )
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    page = query.order_by(Feature.created_at.desc()).limit(PAGE_SIZE).offset(offset)
    return list((await session.execute(page)).scalars()), int(total)


async def active_counts(session: AsyncSession, principal: Principal) -> dict[str, int]:
    """How many visible features are in each status that has not ended, in pipeline order."""
    active = [s.value for s in FeatureStatus if not s.is_terminal]
    query = select(Feature.status, func.count()).where(visible_to(principal))
    rows = (await session.execute(query.where(Feature.status.in_(active)).group_by(Feature.status))).all()
    counts = {str(status): int(count) for status, count in rows}
    return {status: counts.get(status, 0) for status in active}


async def latest_execution(session: AsyncSession, execution_id: str) -> Execution | None:
    """The test run of the feature's latest attempt."""
    query = (
        select(Execution)
        .where(Execution.execution_id == execution_id)
        .order_by(Execution.attempt.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()
