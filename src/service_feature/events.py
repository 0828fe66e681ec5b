"""The versioned event envelope and the subjects events travel on.

Every message on the bus is an `Envelope`: the version lets a consumer refuse (dead-letter) a message it
does not understand instead of misreading it, and the event id doubles as the `Nats-Msg-Id` so a
republished event (outbox relay retry) is dropped by JetStream's de-duplication.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service_feature.models import ExecutionId, FeatureRequest
from service_feature.telemetry import current_carrier


class Subjects:
    """One subject per hop, each read by one filtered durable consumer (a WorkQueue stream allows that)."""

    FEATURE_REQUESTS = "feature.requests"
    ENVIRONMENT_REQUESTED = "feature.environment.requested"
    ENVIRONMENT_COMPLETED = "feature.environment.completed"
    TESTS_REQUESTED = "feature.tests.requested"
    TESTS_COMPLETED = "feature.tests.completed"
    REVIEW_REQUESTED = "feature.review.requested"
    ATTEMPT_REQUESTED = "feature.attempts.requested"
    DELIVERY_REQUESTED = "feature.delivery.requested"
    WORK = (
        FEATURE_REQUESTS,
        ENVIRONMENT_REQUESTED,
        ENVIRONMENT_COMPLETED,
        TESTS_REQUESTED,
        TESTS_COMPLETED,
        REVIEW_REQUESTED,
        ATTEMPT_REQUESTED,
        DELIVERY_REQUESTED,
    )
    DEAD_LETTER = "deadletter.feature"
    STATUS_PREFIX = "status.feature"
    EXECUTOR_RUN = "executor.run"

    @classmethod
    def status(cls, execution_id: str) -> str:
        return f"{cls.STATUS_PREFIX}.{execution_id}"


class EventType:
    FEATURE_REQUESTED = "feature.requested"
    ENVIRONMENT_REQUESTED = "environment.requested"
    ENVIRONMENT_COMPLETED = "environment.completed"
    TESTS_REQUESTED = "tests.requested"
    TESTS_COMPLETED = "tests.completed"
    REVIEW_REQUESTED = "review.requested"
    ATTEMPT_REQUESTED = "attempt.requested"
    DELIVERY_REQUESTED = "delivery.requested"
    STATUS_CHANGED = "status.changed"


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    type: str
    execution_id: ExecutionId
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    trace: dict[str, str] = Field(default_factory=current_carrier)
    payload: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class PoisonMessage(ValueError):
    """A message that can never be handled: it goes to the dead-letter subject with this reason."""


def decode(data: bytes) -> Envelope:
    """Parse an envelope. A bare `FeatureRequest` (the reference design's `nats pub feature.requests …`) is
    wrapped."""
    try:
        return Envelope.model_validate_json(data)
    except ValidationError as envelope_error:
        try:
            request = FeatureRequest.model_validate_json(data)
        except ValidationError:
            raise PoisonMessage(_describe(envelope_error)) from None
        return Envelope(
            event_id=f"request-{request.execution_id}",
            type=EventType.FEATURE_REQUESTED,
            execution_id=request.execution_id,
            payload={"request": request.model_dump(mode="json")},
        )


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    return f"invalid event: {where}: {first['msg']}"
