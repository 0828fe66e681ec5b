"""A feature's life as an explicit state machine: pure code, no I/O.

    queued → checking_out → preparing → generating → testing → reviewing → delivering → delivered
                                              ↑__________|  (failing tests: back to the agent, MAX_ATTEMPTS)
                                                reviewing → awaiting_approval → delivering | rejected

`preparing` is the executor's setup and baseline run on the base commit, before any model call: a base that
cannot be tested fails the feature there, without spending an attempt on the agent.

`failed`, `rejected`, `cancelled` and `delivered` are terminal. Any non-terminal state may fail or be
cancelled. Every transition the services make goes through `transition()`, so an impossible one (for
example a redelivered, stale message trying to move a delivered feature back to testing) is refused here
rather than corrupting the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FeatureStatus(StrEnum):
    queued = "queued"
    checking_out = "checking_out"
    preparing = "preparing"
    generating = "generating"
    testing = "testing"
    reviewing = "reviewing"
    awaiting_approval = "awaiting_approval"
    delivering = "delivering"
    delivered = "delivered"
    failed = "failed"
    rejected = "rejected"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {FeatureStatus.delivered, FeatureStatus.failed, FeatureStatus.rejected, FeatureStatus.cancelled}
)

_FORWARD: dict[FeatureStatus, frozenset[FeatureStatus]] = {
    FeatureStatus.queued: frozenset({FeatureStatus.checking_out}),
    FeatureStatus.checking_out: frozenset({FeatureStatus.preparing}),
    FeatureStatus.preparing: frozenset({FeatureStatus.generating}),
    FeatureStatus.generating: frozenset({FeatureStatus.testing}),
    FeatureStatus.testing: frozenset({FeatureStatus.reviewing, FeatureStatus.generating}),
    FeatureStatus.reviewing: frozenset(
        {FeatureStatus.delivering, FeatureStatus.awaiting_approval, FeatureStatus.rejected}
    ),
    FeatureStatus.awaiting_approval: frozenset({FeatureStatus.delivering, FeatureStatus.rejected}),
    FeatureStatus.delivering: frozenset({FeatureStatus.delivered}),
}

_ALWAYS_ALLOWED_FROM_ACTIVE = frozenset({FeatureStatus.failed, FeatureStatus.cancelled})


class InvalidTransition(ValueError):
    def __init__(self, current: FeatureStatus, target: FeatureStatus) -> None:
        super().__init__(f"cannot move a feature from {current.value} to {target.value}")
        self.current = current
        self.target = target


def allowed_targets(current: FeatureStatus) -> frozenset[FeatureStatus]:
    if current.is_terminal:
        return frozenset()
    return _FORWARD.get(current, frozenset()) | _ALWAYS_ALLOWED_FROM_ACTIVE


def can_transition(current: FeatureStatus, target: FeatureStatus) -> bool:
    return target in allowed_targets(current)


@dataclass(frozen=True)
class Transition:
    """One accepted step, ready to be appended to the feature's event log."""

    source: FeatureStatus
    target: FeatureStatus
    reason: str | None = None

    @property
    def event_type(self) -> str:
        return f"status.{self.target.value}"


def transition(current: FeatureStatus, target: FeatureStatus, reason: str | None = None) -> Transition:
    if not can_transition(current, target):
        raise InvalidTransition(current, target)
    return Transition(current, target, reason)
