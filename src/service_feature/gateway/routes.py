"""The feature API: submit, list, inspect. Writes go through the outbox, so an accepted request is on the
bus as surely as it is in the database.

Every route needs an API key (service_feature.auth). A `submitter` key submits and sees only the features
it submitted: another's is a 404 on every route, reads and writes alike, a submission reusing its
`execution_id` included (what the key may not see it is not told about). `reader` keys see every feature;
`admin` keys may do everything. Submissions are limited per key: a rate (429 with Retry-After), a number of
features not yet ended (429), and a body size (413, for every route).

`router` holds the routes, `feature_router(...)` binds one process's collaborators to them (see
`gateway.deps`); the listing is built per process, since its page size limit is a setting that FastAPI
fixes, with the schema's `maximum`, when the route is built.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the parameter annotations.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.responses import PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from service_feature.auth import Principal
from service_feature.bus.base import Bus
from service_feature.config import GatewaySettings
from service_feature.gateway.dashboard import dashboard_router
from service_feature.gateway.deps import (
    AdminDep,
    AnyoneDep,
    Gateway,
    GatewayBinding,
    GatewayDep,
    SessionDep,
    SubmitterDep,
)
from service_feature.gateway.killswitch_routes import killswitch_router
from service_feature.gateway.route import GatewayRoute
from service_feature.gateway.schemas import (
    EventOut,
    EventsOut,
    FeatureOut,
    FeaturePage,
    HumanDecision,
    Rejection,
)
from service_feature.gateway.streams import streams_router
from service_feature.gateway.submissions import check_repository, create_request, limit_rate
from service_feature.gateway.webhooks import webhooks_router
from service_feature.killswitch import KillSwitch
from service_feature.lifecycle import FeatureStatus
from service_feature.models import ExecutionId, FeatureRequest
from service_feature.store.database import Database
from service_feature.store.features import (
    events_of,
    find_feature,
    latest_patch,
    latest_review,
    list_features,
    move,
    request_closure,
    request_delivery,
    transcript_of,
)
from service_feature.store.outbox import OutboxRelay
from service_feature.store.tables import Feature
from service_feature.telemetry import tracer

PREFIX = "/api/v1/features"
router = APIRouter(prefix=PREFIX, tags=["features"], route_class=GatewayRoute)

Change = Callable[[AsyncSession, Feature], None]


def feature_router(
    settings: GatewaySettings,
    database: Database,
    relay: OutboxRelay,
    *,
    bus: Bus | None = None,
    switch: KillSwitch | None = None,
) -> APIRouter:
    """The gateway's routes bound to one process's collaborators; with the bus and the kill switch, the
    kill-switch routes too."""
    gateway = Gateway.create(settings, database, relay, bus=bus, switch=switch)
    # The body limit is FastAPI's own, enforced while the body is read (a chunked one too): 413.
    bound = APIRouter(dependencies=[Depends(GatewayBinding(gateway))], max_body_size=settings.max_body_bytes)
    bound.include_router(router)
    bound.include_router(listing_router(settings.max_page_size))
    bound.include_router(streams_router)
    bound.include_router(webhooks_router)
    bound.include_router(dashboard_router)
    if bus is not None and switch is not None:
        bound.include_router(killswitch_router)
    return bound


# -- helpers ---------------------------------------------------------------------------------------------


def not_found(execution_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"feature '{execution_id}' not found")


def visible(feature: Feature | None, principal: Principal) -> bool:
    return feature is not None and (principal.sees_all_features or feature.submitted_by == principal.key_id)


async def find_visible(session: AsyncSession, execution_id: str, principal: Principal) -> Feature:
    """The feature, when this key may see it; a 404 alike for an unknown one and another key's."""
    feature = await find_feature(session, execution_id)
    if feature is None or not visible(feature, principal):
        raise not_found(execution_id)
    return feature


async def existing_request(gateway: Gateway, request: FeatureRequest, principal: Principal) -> Feature:
    """The feature a repeated submission names: its own, for the same request. Another key's is unknown
    to this one, as on every other route; its own with another request is a conflict."""
    async with gateway.database.transaction() as session:
        feature = await find_visible(session, request.execution_id, principal)
    if FeatureRequest.model_validate(feature.request) != request:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"execution_id '{request.execution_id}' already names a different request",
        )
    return feature


async def change(gateway: Gateway, execution_id: str, principal: Principal, apply: Change) -> FeatureOut:
    """Apply a human's change to a feature. A service may move the feature meanwhile (optimistic
    locking): then read it again and retry."""

    async def once() -> Feature:
        async with gateway.database.transaction() as session:
            feature = await find_visible(session, execution_id, principal)
            apply(session, feature)
        return feature

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(StaleDataError), stop=stop_after_attempt(5), reraise=True
    )
    feature: Feature = await retrying(once)
    gateway.relay.wake()
    return FeatureOut.of(feature)


def check_awaiting_approval(feature: Feature) -> None:
    if feature.status != FeatureStatus.awaiting_approval:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"feature is {feature.status}, not awaiting_approval"
        )


# -- routes ----------------------------------------------------------------------------------------------


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FeatureOut,
    responses={413: {"description": "body too large"}, 429: {"description": "rate or queue limit"}},
)
async def submit_feature(
    request: FeatureRequest, response: Response, principal: SubmitterDep, gateway: GatewayDep
) -> FeatureOut:
    """Accept a feature request. Submitting the same `execution_id` again returns the existing feature."""
    await limit_rate(gateway, principal)
    await check_repository(gateway, request)
    # The feature's trace starts here: the events written below carry this span's context onwards.
    with tracer.start_as_current_span("submit feature", attributes={"execution_id": request.execution_id}):
        created = await create_request(gateway, request, principal)
    if created is None:
        response.status_code = status.HTTP_200_OK
        return FeatureOut.of(await existing_request(gateway, request, principal))
    gateway.relay.wake()
    return FeatureOut.of(created)


def listing_router(max_page_size: int) -> APIRouter:
    """The listing, whose `limit` is at most SF_MAX_PAGE_SIZE (a bound, and a schema `maximum`, that
    FastAPI fixes when the route is built)."""
    listing = APIRouter(prefix=PREFIX, tags=["features"], route_class=GatewayRoute)

    @listing.get("", response_model=FeaturePage)
    async def list_all(
        principal: AnyoneDep,
        session: SessionDep,
        status_filter: Annotated[FeatureStatus | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=max_page_size)] = 20,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    ) -> FeaturePage:
        """Newest first; a submitter key lists only its own features."""
        return await list_page(session, principal, status_filter, limit, offset)

    return listing


async def list_page(
    session: AsyncSession, principal: Principal, status_filter: FeatureStatus | None, limit: int, offset: int
) -> FeaturePage:
    own = None if principal.sees_all_features else principal.key_id
    rows, total = await list_features(
        session, status=status_filter, limit=limit, offset=offset, submitted_by=own
    )
    return FeaturePage(items=[FeatureOut.of(row) for row in rows], total=total, limit=limit, offset=offset)


@router.get("/{execution_id}", response_model=FeatureOut)
async def get_one(execution_id: ExecutionId, principal: AnyoneDep, session: SessionDep) -> FeatureOut:
    return FeatureOut.of(await find_visible(session, execution_id, principal))


@router.get("/{execution_id}/events", response_model=EventsOut)
async def get_events(execution_id: ExecutionId, principal: AnyoneDep, session: SessionDep) -> EventsOut:
    await find_visible(session, execution_id, principal)
    events = await events_of(session, execution_id)
    return EventsOut(execution_id=execution_id, events=[EventOut.of(event) for event in events])


@router.get("/{execution_id}/patch", response_class=PlainTextResponse)
async def get_patch(
    execution_id: ExecutionId, principal: AnyoneDep, session: SessionDep
) -> PlainTextResponse:
    """The unified diff of the latest attempt."""
    await find_visible(session, execution_id, principal)
    patch = await latest_patch(session, execution_id)
    if patch is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"feature '{execution_id}' has no patch yet")
    return PlainTextResponse(patch.diff, media_type="text/x-diff")


@router.get("/{execution_id}/review")
async def get_review(execution_id: ExecutionId, principal: AnyoneDep, session: SessionDep) -> dict[str, Any]:
    await find_visible(session, execution_id, principal)
    review = await latest_review(session, execution_id)
    if review is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"feature '{execution_id}' has no review yet")
    return {"execution_id": execution_id, "attempt": review.attempt, **review.result}


@router.get("/{execution_id}/transcript")
async def get_transcript(
    execution_id: ExecutionId, principal: AnyoneDep, session: SessionDep
) -> dict[str, Any]:
    await find_visible(session, execution_id, principal)
    entries = await transcript_of(session, execution_id)
    return {
        "execution_id": execution_id,
        "entries": [
            {
                "attempt": e.attempt,
                "kind": e.kind,
                "content": e.content,
                "created_at": e.created_at.isoformat(),
            }
            for e in entries
        ],
    }


@router.post("/{execution_id}/cancel", response_model=FeatureOut)
async def cancel(execution_id: ExecutionId, principal: SubmitterDep, gateway: GatewayDep) -> FeatureOut:
    """Cancel a feature that has not ended; in-flight steps notice and stop at their next commit.
    A submitter key cancels its own features; an admin key any."""

    def apply(session: AsyncSession, feature: Feature) -> None:
        if FeatureStatus(feature.status).is_terminal:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"feature is already {feature.status}")
        reason = f"cancelled by {principal.name}"
        move(session, feature, FeatureStatus.cancelled, reason=reason)
        request_closure(session, feature, reason)

    return await change(gateway, execution_id, principal, apply)


@router.post("/{execution_id}/approve", response_model=FeatureOut)
async def approve(
    execution_id: ExecutionId, decision: HumanDecision, principal: AdminDep, gateway: GatewayDep
) -> FeatureOut:
    """Approve a feature the reviewer held for a person (`needs_human`): it is delivered."""

    def apply(session: AsyncSession, feature: Feature) -> None:
        check_awaiting_approval(feature)
        detail = {"approved_by": principal.name, "comment": decision.reason}
        move(session, feature, FeatureStatus.delivering, detail=detail)
        request_delivery(session, feature)

    return await change(gateway, execution_id, principal, apply)


@router.post("/{execution_id}/reject", response_model=FeatureOut)
async def reject(
    execution_id: ExecutionId, decision: Rejection, principal: AdminDep, gateway: GatewayDep
) -> FeatureOut:
    """Reject a feature the reviewer held for a person; the reason is recorded on the feature."""

    def apply(session: AsyncSession, feature: Feature) -> None:
        check_awaiting_approval(feature)
        reason = f"rejected by {principal.name}: {decision.reason}"
        move(session, feature, FeatureStatus.rejected, reason=reason)
        request_closure(session, feature, reason)

    return await change(gateway, execution_id, principal, apply)
