"""The feature API: submit, list, inspect. Writes go through the outbox, so an accepted request is on the
bus as surely as it is in the database."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import PlainTextResponse

from service_feature.config import GatewaySettings
from service_feature.gateway.schemas import EventOut, EventsOut, FeatureOut, FeaturePage
from service_feature.git import RepositoryRefused, check_repository_url
from service_feature.lifecycle import FeatureStatus
from service_feature.models import ExecutionId, FeatureRequest
from service_feature.store.database import Database
from service_feature.store.features import (
    create_feature,
    events_of,
    find_feature,
    latest_patch,
    latest_review,
    list_features,
    move,
    transcript_of,
)
from service_feature.store.outbox import OutboxRelay
from service_feature.store.tables import Feature


def _not_found(execution_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"feature '{execution_id}' not found")


def feature_router(settings: GatewaySettings, database: Database, relay: OutboxRelay) -> APIRouter:
    router = APIRouter(prefix="/api/v1/features", tags=["features"])

    async def load(execution_id: str) -> Feature:
        async with database.transaction() as session:
            feature = await find_feature(session, execution_id)
        if feature is None:
            raise _not_found(execution_id)
        return feature

    @router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=FeatureOut)
    async def submit_feature(request: FeatureRequest, response: Response) -> FeatureOut:
        """Accept a feature request. Submitting the same `execution_id` again returns the existing feature."""
        try:
            check_repository_url(request.repository_url, allow_local=settings.allow_local_repositories)
        except RepositoryRefused as error:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=[{"loc": ["body", "repository_url"], "msg": str(error), "type": "value_error"}],
            ) from None
        async with database.transaction() as session:
            existing = await find_feature(session, request.execution_id)
            if existing is None:
                feature = await create_feature(session, request)
        if existing is not None:
            if FeatureRequest.model_validate(existing.request) != request:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    detail=f"execution_id '{request.execution_id}' already names a different request",
                )
            response.status_code = status.HTTP_200_OK
            return FeatureOut.of(existing)
        relay.wake()
        return FeatureOut.of(feature)

    @router.get("", response_model=FeaturePage)
    async def list_all(
        status_filter: Annotated[FeatureStatus | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=settings.max_page_size)] = 20,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> FeaturePage:
        async with database.transaction() as session:
            rows, total = await list_features(session, status=status_filter, limit=limit, offset=offset)
        return FeaturePage(
            items=[FeatureOut.of(row) for row in rows], total=total, limit=limit, offset=offset
        )

    @router.get("/{execution_id}", response_model=FeatureOut)
    async def get_one(execution_id: ExecutionId) -> FeatureOut:
        return FeatureOut.of(await load(execution_id))

    @router.get("/{execution_id}/events", response_model=EventsOut)
    async def get_events(execution_id: ExecutionId) -> EventsOut:
        await load(execution_id)
        async with database.transaction() as session:
            events = await events_of(session, execution_id)
        return EventsOut(execution_id=execution_id, events=[EventOut.of(event) for event in events])

    @router.get("/{execution_id}/patch", response_class=PlainTextResponse)
    async def get_patch(execution_id: ExecutionId) -> PlainTextResponse:
        """The unified diff of the latest attempt."""
        await load(execution_id)
        async with database.transaction() as session:
            patch = await latest_patch(session, execution_id)
        if patch is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, detail=f"feature '{execution_id}' has no patch yet"
            )
        return PlainTextResponse(patch.diff, media_type="text/x-diff")

    @router.get("/{execution_id}/review")
    async def get_review(execution_id: ExecutionId) -> dict[str, Any]:
        await load(execution_id)
        async with database.transaction() as session:
            review = await latest_review(session, execution_id)
        if review is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, detail=f"feature '{execution_id}' has no review yet"
            )
        return {"execution_id": execution_id, "attempt": review.attempt, **review.result}

    @router.get("/{execution_id}/transcript")
    async def get_transcript(execution_id: ExecutionId) -> dict[str, Any]:
        await load(execution_id)
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

    @router.post("/{execution_id}/cancel", response_model=FeatureOut)
    async def cancel(execution_id: ExecutionId) -> FeatureOut:
        """Cancel a feature that has not ended; in-flight steps notice and stop at their next commit."""
        async with database.transaction() as session:
            feature = await find_feature(session, execution_id)
            if feature is None:
                raise _not_found(execution_id)
            if FeatureStatus(feature.status).is_terminal:
                raise HTTPException(status.HTTP_409_CONFLICT, detail=f"feature is already {feature.status}")
            move(session, feature, FeatureStatus.cancelled, reason="cancelled by request")
        relay.wake()
        return FeatureOut.of(feature)

    return router
