"""What the HTTP API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service_feature.store.tables import Feature, FeatureEvent


class FeatureOut(BaseModel):
    execution_id: str
    status: str
    title: str
    repository_url: str
    branch: str
    attempts: int
    agent_turns: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float
    base_commit: str | None
    delivered_branch: str | None
    delivered_commit: str | None
    pull_request_url: str | None = None
    preparation: dict[str, Any] | None = Field(
        description="The setup and baseline run on the base commit before any model call: setup outcome "
        "and seconds, whether the environment was cached, the baseline's counts, and when the base cannot "
        "be tested why (`untestable`) with the log's tail (`log_tail`)."
    )
    test_summary: dict[str, Any] | None
    review_summary: dict[str, Any] | None
    failure_reason: str | None
    submitted_by: str | None
    created_at: datetime
    updated_at: datetime
    request: dict[str, Any]

    @classmethod
    def of(cls, feature: Feature) -> FeatureOut:
        return cls(
            execution_id=feature.execution_id,
            status=feature.status,
            title=feature.title,
            repository_url=feature.repository_url,
            branch=feature.base_branch,
            attempts=feature.attempts,
            agent_turns=feature.agent_turns,
            input_tokens=feature.input_tokens,
            output_tokens=feature.output_tokens,
            cached_input_tokens=feature.cached_input_tokens,
            cost_usd=round(feature.cost_usd, 6),
            base_commit=feature.base_commit,
            delivered_branch=feature.delivered_branch,
            delivered_commit=feature.delivered_commit,
            pull_request_url=feature.pull_request_url,
            preparation=feature.preparation,
            test_summary=feature.test_summary,
            review_summary=feature.review_summary,
            failure_reason=feature.failure_reason,
            submitted_by=feature.submitted_by,
            created_at=feature.created_at,
            updated_at=feature.updated_at,
            request=feature.request,
        )


class FeaturePage(BaseModel):
    items: list[FeatureOut]
    total: int
    limit: int
    offset: int


class EventOut(BaseModel):
    id: int
    type: str
    status: str
    detail: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, event: FeatureEvent) -> EventOut:
        return cls(
            id=event.id,
            type=event.type,
            status=event.status,
            detail=event.detail,
            created_at=event.created_at,
        )


class EventsOut(BaseModel):
    execution_id: str
    events: list[EventOut]


class HumanDecision(BaseModel):
    """A person's approve or reject of a feature the reviewer held (`awaiting_approval`)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=2000)


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
