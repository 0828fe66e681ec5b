"""The database schema. The database is the source of truth; the bus only carries work between services."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp on every backend: SQLite stores it without zone, so reads put UTC back."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class Feature(Base):
    __tablename__ = "features"

    execution_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    request: Mapped[dict[str, Any]]
    repository_url: Mapped[str] = mapped_column(Text)
    base_branch: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    agent_turns: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    base_commit: Mapped[str | None] = mapped_column(String(64))
    delivered_branch: Mapped[str | None] = mapped_column(String(255))
    delivered_commit: Mapped[str | None] = mapped_column(String(64))
    # Pull-request delivery: the pull request (merge request) opened for the feature's branch.
    pull_request_url: Mapped[str | None] = mapped_column(Text)
    pull_request_number: Mapped[int | None] = mapped_column(Integer)
    # The executor's setup and baseline run on the base commit, before any model call (see lifecycle).
    preparation: Mapped[dict[str, Any] | None]
    test_summary: Mapped[dict[str, Any] | None]
    review_summary: Mapped[dict[str, Any] | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    # The API key that submitted it (None: it arrived straight from the bus); scopes what a submitter sees.
    submitted_by: Mapped[str | None] = mapped_column(String(32), index=True)

    # Optimistic locking: two replicas racing on one feature cannot both move it.
    __mapper_args__ = {"version_id_col": version}


class FeatureEvent(Base):
    """The append-only log of everything that happened to a feature."""

    __tablename__ = "feature_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(ForeignKey("features.execution_id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_feature_events_execution_id_id", "execution_id", "id"),)


class Patch(Base):
    """The diff the agent produced, one per attempt."""

    __tablename__ = "patches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(ForeignKey("features.execution_id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    diff: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("execution_id", "attempt"),)


class Execution(Base):
    """One test run by the executor."""

    __tablename__ = "executions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(
        ForeignKey("features.execution_id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("execution_id", "attempt"),)


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(
        ForeignKey("features.execution_id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(32))
    risk_score: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("execution_id", "attempt"),)


class TranscriptEntry(Base):
    """Every model call, tool call and tool result of a feature, in order."""

    __tablename__ = "transcript_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(ForeignKey("features.execution_id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    content: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_transcript_entries_execution_id_id", "execution_id", "id"),)


class OutboxMessage(Base):
    """Events written in the same transaction as the change that causes them, published afterwards."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(255))
    envelope: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(index=True)

    # What the relay reads: the oldest unpublished rows, however many published ones the table holds.
    __table_args__ = (
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )


class OpenFeatureCount(Base):
    """How many features of an API key have not ended: the gateway's per-key admission limit reads it.
    Kept by database triggers on `features` (migration 0006), never written by the application."""

    __tablename__ = "open_feature_counts"

    submitted_by: Mapped[str] = mapped_column(String(32), primary_key=True)
    open_features: Mapped[int] = mapped_column(Integer)


class ProcessedMessage(Base):
    """Which consumer already applied which event: makes redelivered messages harmless."""

    __tablename__ = "processed_messages"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key of the HTTP API. Only the key's SHA-256 is kept; `prefix` is a non-secret listing hint."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class KillSwitchChange(Base):
    """Every engage and release of the global kill switch: who, when, why. The latest row is the state."""

    __tablename__ = "kill_switch_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    engaged: Mapped[bool]
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
