"""The contract between the services: one model per event, inside a versioned envelope.

Every message on the bus is an `Envelope` carrying one typed event. The version lets a consumer refuse
(dead-letter) a message it does not understand instead of misreading it, and the event id doubles as the
`Nats-Msg-Id`, so a republished event (an outbox relay retry) is dropped by JetStream's de-duplication. On the
wire the event's type sits beside its payload (`{"type": "tests.requested", "payload": {"attempt": 2}}`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from service_feature.errors import PoisonMessage
from service_feature.models import ExecutionId, FeatureRequest, Language, TestResult
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
    CLOSURE_REQUESTED = "feature.closure.requested"
    WORK = (
        FEATURE_REQUESTS,
        ENVIRONMENT_REQUESTED,
        ENVIRONMENT_COMPLETED,
        TESTS_REQUESTED,
        TESTS_COMPLETED,
        REVIEW_REQUESTED,
        ATTEMPT_REQUESTED,
        DELIVERY_REQUESTED,
        CLOSURE_REQUESTED,
    )
    DEAD_LETTER = "deadletter.feature"
    STATUS_PREFIX = "status.feature"
    EXECUTOR_RUN = "executor.run"
    EXECUTOR_COMMAND = "executor.command"

    @classmethod
    def status(cls, execution_id: str) -> str:
        return f"{cls.STATUS_PREFIX}.{execution_id}"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: ClassVar[str]


class FeatureRequested(_Event):
    """A feature was accepted: the worker checks its repository out."""

    subject: ClassVar[str] = Subjects.FEATURE_REQUESTS
    type: Literal["feature.requested"] = "feature.requested"
    request: FeatureRequest


class EnvironmentRequested(_Event):
    """The executor sets the base commit's environment up and runs its tests once (the baseline)."""

    subject: ClassVar[str] = Subjects.ENVIRONMENT_REQUESTED
    type: Literal["environment.requested"] = "environment.requested"
    base_commit: str


class EnvironmentCompleted(_Event):
    """The base commit's preparation: the worker calls the agent, or fails the feature if untestable."""

    subject: ClassVar[str] = Subjects.ENVIRONMENT_COMPLETED
    type: Literal["environment.completed"] = "environment.completed"
    result: TestResult


class AttemptRequested(_Event):
    """The worker generates attempt `attempt`; `feedback` says why the previous attempt failed its tests."""

    subject: ClassVar[str] = Subjects.ATTEMPT_REQUESTED
    type: Literal["attempt.requested"] = "attempt.requested"
    attempt: PositiveInt
    feedback: str | None = None


class TestsRequested(_Event):
    """The executor runs the tests of attempt `attempt`'s patch."""

    __test__: ClassVar[bool] = False
    subject: ClassVar[str] = Subjects.TESTS_REQUESTED
    type: Literal["tests.requested"] = "tests.requested"
    attempt: PositiveInt


class TestsCompleted(_Event):
    """The tests of attempt `attempt` ran: the worker sends it to review or tries again."""

    __test__: ClassVar[bool] = False
    subject: ClassVar[str] = Subjects.TESTS_COMPLETED
    type: Literal["tests.completed"] = "tests.completed"
    attempt: PositiveInt
    result: TestResult


class ReviewRequested(_Event):
    """The reviewer decides on attempt `attempt`'s tested patch."""

    subject: ClassVar[str] = Subjects.REVIEW_REQUESTED
    type: Literal["review.requested"] = "review.requested"
    attempt: PositiveInt


class DeliveryRequested(_Event):
    """The worker commits and pushes attempt `attempt`'s patch (approved by the reviewer or a person).
    `draft`: the reviewer held it for a person; in pull-request delivery the worker opens the pull request
    as a draft meanwhile (in branch delivery there is nothing to do until the person decides)."""

    subject: ClassVar[str] = Subjects.DELIVERY_REQUESTED
    type: Literal["delivery.requested"] = "delivery.requested"
    attempt: PositiveInt
    draft: bool = False


class ClosureRequested(_Event):
    """The feature ended undelivered (cancelled, rejected): the worker closes its pull request, if any."""

    subject: ClassVar[str] = Subjects.CLOSURE_REQUESTED
    type: Literal["closure.requested"] = "closure.requested"
    reason: str


class StatusChanged(_Event):
    """A notification on the status feed (`status.feature.<id>`), not work: watchers, the executor's
    cancellation. Besides the new status, the transition's details (attempt, branch, summary…) ride along."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    subject: ClassVar[str] = Subjects.STATUS_PREFIX
    type: Literal["status.changed"] = "status.changed"
    status: str
    source: str | None = Field(default=None, alias="from")
    reason: str | None = None

    @property
    def detail(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


Event = Annotated[
    FeatureRequested
    | EnvironmentRequested
    | EnvironmentCompleted
    | AttemptRequested
    | TestsRequested
    | TestsCompleted
    | ReviewRequested
    | DeliveryRequested
    | ClosureRequested
    | StatusChanged,
    Field(discriminator="type"),
]


class RunSpec(BaseModel):
    """What one test run needs: the request of an interactive run (`executor.run`) and of durable ones."""

    execution_id: ExecutionId
    repository_url: str
    base_commit: str
    diff: str
    language: Language
    test_command: str | None = None

    @classmethod
    def of(cls, request: FeatureRequest, base_commit: str, diff: str) -> RunSpec:
        """A run of the request's repository at `base_commit` plus `diff`, the request's way."""
        return cls(
            execution_id=request.execution_id,
            repository_url=request.repository_url,
            base_commit=base_commit,
            diff=diff,
            language=request.specification.language,
            test_command=request.test_command,
        )


class CommandSpec(BaseModel):
    """The agent's `run_command`: one shell command on its current tree (`run`: base commit + diff), in the
    test sandbox and the project's environment (request of `executor.command`)."""

    run: RunSpec
    command: str = Field(min_length=1, max_length=20_000)
    timeout_seconds: PositiveInt


class CommandResult(BaseModel):
    """What the command did: its exit code and output (head and tail when long), and the whole change from
    the base commit afterwards (`diff`), which the agent's tree adopts. `error`: why it could not run."""

    exit_code: int | None = None
    timed_out: bool = False
    output: str = ""
    diff: str | None = None
    error: str | None = None


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    type: str
    execution_id: ExecutionId
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    trace: dict[str, str] = Field(default_factory=current_carrier)
    payload: Event

    @model_validator(mode="before")
    @classmethod
    def _pair_type_and_payload(cls, data: Any) -> Any:
        """The wire keeps the type beside the payload; the model keeps it in the payload's own class."""
        if not isinstance(data, dict):
            return data
        payload = data.get("payload")
        if isinstance(payload, BaseModel) and "type" not in data:
            return {**data, "type": getattr(payload, "type", None)}
        if isinstance(payload, dict) and "type" in data:
            return {**data, "payload": {**payload, "type": data["type"]}}
        return data

    @model_validator(mode="after")
    def _check_type(self) -> Envelope:
        if self.type != self.payload.type:
            raise ValueError(
                f"envelope type {self.type!r} does not match its payload's {self.payload.type!r}"
            )
        return self

    @classmethod
    def of(cls, execution_id: str, event: Event, *, event_id: str | None = None) -> Envelope:
        ids = {"event_id": event_id} if event_id else {}
        return cls(execution_id=execution_id, type=event.type, payload=event, **ids)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude={"payload": {"type"}}).encode()

    def to_json(self) -> dict[str, Any]:
        """The envelope as stored in the outbox: the same shape as on the wire."""
        return self.model_dump(mode="json", by_alias=True, exclude={"payload": {"type"}})


def decode(data: bytes) -> Envelope:
    """Parse an envelope and its event. A bare `FeatureRequest` (the reference design's
    `nats pub feature.requests …`) is wrapped; anything else that does not validate is a `PoisonMessage`."""
    try:
        return Envelope.model_validate_json(data)
    except ValidationError as envelope_error:
        try:
            request = FeatureRequest.model_validate_json(data)
        except ValidationError:
            raise PoisonMessage(_describe(envelope_error)) from None
        return Envelope.of(
            request.execution_id,
            FeatureRequested(request=request),
            event_id=f"request-{request.execution_id}",
        )


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    return f"invalid event: {where}: {first['msg']}"
