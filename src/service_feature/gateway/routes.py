"""The feature API: submit, list, inspect. Writes go through the outbox, so an accepted request is on the
bus as surely as it is in the database.

Every route needs an API key (service_feature.auth). A `submitter` key submits and sees only the features
it submitted (another's is a 404, not a 403: its existence is not revealed); `reader` keys see every
feature; `admin` keys may do everything. Submissions are limited per key: a rate (429 with Retry-After), a
number of features not yet ended (429), and a body size (413, for every route).
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the parameter annotations, and some
# refer to this module's closures (the page size limit) that string annotations cannot see.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.responses import PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from service_feature.auth import Authenticator, Principal, Role
from service_feature.config import GatewaySettings
from service_feature.gateway.limits import body_limited_route
from service_feature.gateway.schemas import (
    EventOut,
    EventsOut,
    FeatureOut,
    FeaturePage,
    HumanDecision,
    Rejection,
)
from service_feature.git import RepositoryRefused, check_repository_host, check_repository_url
from service_feature.lifecycle import FeatureStatus
from service_feature.models import ExecutionId, FeatureRequest
from service_feature.ratelimit import RateLimiter
from service_feature.store.database import Database
from service_feature.store.features import (
    count_open_features,
    create_feature,
    events_of,
    find_feature,
    latest_patch,
    latest_review,
    list_features,
    move,
    request_delivery,
    transcript_of,
)
from service_feature.store.outbox import OutboxRelay
from service_feature.store.tables import Feature
from service_feature.telemetry import tracer


def _not_found(execution_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"feature '{execution_id}' not found")


def _visible(feature: Feature | None, principal: Principal) -> bool:
    return feature is not None and (principal.sees_all_features or feature.submitted_by == principal.key_id)


def feature_router(settings: GatewaySettings, database: Database, relay: OutboxRelay) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1/features", tags=["features"], route_class=body_limited_route(settings.max_body_bytes)
    )
    auth = Authenticator(database)
    anyone = Depends(auth.require(Role.submitter, Role.reader))
    submitter = Depends(auth.require(Role.submitter))
    admin = Depends(auth.require(Role.admin))
    submissions = RateLimiter("submit", settings.submit_rate_per_minute, settings.redis_url)
    allowlist = settings.repository_hosts

    async def load(execution_id: str, principal: Principal) -> Feature:
        async with database.transaction() as session:
            feature = await find_feature(session, execution_id)
        if feature is None or not _visible(feature, principal):
            raise _not_found(execution_id)
        return feature

    def refuse_url(error: RepositoryRefused) -> HTTPException:
        return HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "repository_url"], "msg": str(error), "type": "value_error"}],
        )

    async def store_request(request: FeatureRequest, principal: Principal) -> tuple[Feature, bool]:
        """The feature with this execution_id, and whether it was just created (with its queued event)."""
        async with database.transaction() as session:
            existing = await find_feature(session, request.execution_id)
            if existing is not None:
                return existing, False
            queued = await count_open_features(session, principal.key_id)
            if queued >= settings.max_queued_per_key:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    detail=f"this key has {queued} features not yet ended, the most allowed "
                    "(SF_MAX_QUEUED_PER_KEY); wait for one to end or cancel one",
                )
            return await create_feature(session, request, submitted_by=principal.key_id), True

    @router.post(
        "",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=FeatureOut,
        responses={413: {"description": "body too large"}, 429: {"description": "rate or queue limit"}},
    )
    async def submit_feature(
        request: FeatureRequest, response: Response, principal: Principal = submitter
    ) -> FeatureOut:
        """Accept a feature request. Submitting the same `execution_id` again returns the existing feature."""
        if (wait := await submissions.hit(principal.key_id)) is not None:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"over {settings.submit_rate_per_minute} submissions a minute for this key",
                headers={"Retry-After": str(wait)},
            )
        try:
            url = check_repository_url(
                request.repository_url, allow_local=settings.allow_local_repositories, allowlist=allowlist
            )
            await check_repository_host(url, allowlist=allowlist)
        except RepositoryRefused as error:
            raise refuse_url(error) from None
        # The feature's trace starts here: the events written below carry this span's context onwards.
        with tracer.start_as_current_span(
            "submit feature", attributes={"execution_id": request.execution_id}
        ):
            feature, created = await store_request(request, principal)
        if not created:
            if not _visible(feature, principal) or FeatureRequest.model_validate(feature.request) != request:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    detail=f"execution_id '{request.execution_id}' already names a different request",
                )
            response.status_code = status.HTTP_200_OK
            return FeatureOut.of(feature)
        relay.wake()
        return FeatureOut.of(feature)

    @router.get("", response_model=FeaturePage)
    async def list_all(
        principal: Principal = anyone,
        status_filter: Annotated[FeatureStatus | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=settings.max_page_size)] = 20,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    ) -> FeaturePage:
        """Newest first; a submitter key lists only its own features."""
        own = None if principal.sees_all_features else principal.key_id
        async with database.transaction() as session:
            rows, total = await list_features(
                session, status=status_filter, limit=limit, offset=offset, submitted_by=own
            )
        return FeaturePage(
            items=[FeatureOut.of(row) for row in rows], total=total, limit=limit, offset=offset
        )

    @router.get("/{execution_id}", response_model=FeatureOut)
    async def get_one(execution_id: ExecutionId, principal: Principal = anyone) -> FeatureOut:
        return FeatureOut.of(await load(execution_id, principal))

    @router.get("/{execution_id}/events", response_model=EventsOut)
    async def get_events(execution_id: ExecutionId, principal: Principal = anyone) -> EventsOut:
        await load(execution_id, principal)
        async with database.transaction() as session:
            events = await events_of(session, execution_id)
        return EventsOut(execution_id=execution_id, events=[EventOut.of(event) for event in events])

    @router.get("/{execution_id}/patch", response_class=PlainTextResponse)
    async def get_patch(execution_id: ExecutionId, principal: Principal = anyone) -> PlainTextResponse:
        """The unified diff of the latest attempt."""
        await load(execution_id, principal)
        async with database.transaction() as session:
            patch = await latest_patch(session, execution_id)
        if patch is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, detail=f"feature '{execution_id}' has no patch yet"
            )
        return PlainTextResponse(patch.diff, media_type="text/x-diff")

    @router.get("/{execution_id}/review")
    async def get_review(execution_id: ExecutionId, principal: Principal = anyone) -> dict[str, Any]:
        await load(execution_id, principal)
        async with database.transaction() as session:
            review = await latest_review(session, execution_id)
        if review is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, detail=f"feature '{execution_id}' has no review yet"
            )
        return {"execution_id": execution_id, "attempt": review.attempt, **review.result}

    @router.get("/{execution_id}/transcript")
    async def get_transcript(execution_id: ExecutionId, principal: Principal = anyone) -> dict[str, Any]:
        await load(execution_id, principal)
        async with database.transaction() as session:
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

    async def change(
        execution_id: str, principal: Principal, apply: Callable[[AsyncSession, Feature], None]
    ) -> FeatureOut:
        """Apply a human's change to a feature. A service may move the feature meanwhile (optimistic
        locking): then read it again and retry."""

        async def once() -> Feature:
            async with database.transaction() as session:
                feature = await find_feature(session, execution_id)
                if feature is None or not _visible(feature, principal):
                    raise _not_found(execution_id)
                apply(session, feature)
            return feature

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(StaleDataError), stop=stop_after_attempt(5), reraise=True
        )
        feature: Feature = await retrying(once)
        relay.wake()
        return FeatureOut.of(feature)

    @router.post("/{execution_id}/cancel", response_model=FeatureOut)
    async def cancel(execution_id: ExecutionId, principal: Principal = submitter) -> FeatureOut:
        """Cancel a feature that has not ended; in-flight steps notice and stop at their next commit.
        A submitter key cancels its own features; an admin key any."""

        def apply(session: AsyncSession, feature: Feature) -> None:
            if FeatureStatus(feature.status).is_terminal:
                raise HTTPException(status.HTTP_409_CONFLICT, detail=f"feature is already {feature.status}")
            move(session, feature, FeatureStatus.cancelled, reason=f"cancelled by {principal.name}")

        return await change(execution_id, principal, apply)

    def awaiting_approval(feature: Feature) -> None:
        if feature.status != FeatureStatus.awaiting_approval:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail=f"feature is {feature.status}, not awaiting_approval"
            )

    @router.post("/{execution_id}/approve", response_model=FeatureOut)
    async def approve(
        execution_id: ExecutionId, decision: HumanDecision, principal: Principal = admin
    ) -> FeatureOut:
        """Approve a feature the reviewer held for a person (`needs_human`): it is delivered."""

        def apply(session: AsyncSession, feature: Feature) -> None:
            awaiting_approval(feature)
            move(
                session,
                feature,
                FeatureStatus.delivering,
                detail={"approved_by": principal.name, "comment": decision.reason},
            )
            request_delivery(session, feature)

        return await change(execution_id, principal, apply)

    @router.post("/{execution_id}/reject", response_model=FeatureOut)
    async def reject(
        execution_id: ExecutionId, decision: Rejection, principal: Principal = admin
    ) -> FeatureOut:
        """Reject a feature the reviewer held for a person; the reason is recorded on the feature."""

        def apply(session: AsyncSession, feature: Feature) -> None:
            awaiting_approval(feature)
            reason = f"rejected by {principal.name}: {decision.reason}"
            move(session, feature, FeatureStatus.rejected, reason=reason)

        return await change(execution_id, principal, apply)

    return router
