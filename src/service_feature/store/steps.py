"""The skeleton every service's step handler shares, so that a handler is only its effect.

A step reads what it needs in one short transaction, does its slow work (a checkout, the agent, a test
run, a review) with no transaction open, and records the outcome in a second transaction that also marks
the message handled and queues the next step's event (the outbox), then wakes the relay. Both transactions
first check that the feature is still where the step expects it (`at`): anything else is a redelivery of a
step already done, or a feature that ended meanwhile, and the step quietly does nothing.

Failures are sorted by `service_feature.errors`: a `PermanentError` fails the feature with its message, a
`TransientError` (or any other exception) hands the message back for a retry, a `PoisonMessage` goes to the
dead-letter subject.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from service_feature.bus.base import Delivery, Handler
from service_feature.errors import PermanentError, PoisonMessage
from service_feature.lifecycle import FeatureStatus
from service_feature.models import FeatureRequest
from service_feature.store.database import Database
from service_feature.store.features import claim_message, fail_feature, find_feature, was_processed
from service_feature.store.outbox import OutboxRelay
from service_feature.store.tables import Feature

log = structlog.get_logger(__name__)

E = TypeVar("E")
T = TypeVar("T")
Guard = Callable[[Feature], bool]
Effect = Callable[[AsyncSession, Feature], Awaitable[None] | None]


def at(status: FeatureStatus, *, attempt: int | None = None) -> Guard:
    """The feature is in `status` and, when given, has `attempt` attempts recorded."""

    def current(feature: Feature) -> bool:
        return feature.status == status and (attempt is None or feature.attempts == attempt)

    return current


def request_of(feature: Feature) -> FeatureRequest:
    """The request a feature was submitted with, as stored."""
    return FeatureRequest.model_validate(feature.request)


@dataclass(frozen=True)
class Step(Generic[E]):
    """One message being handled by one consumer."""

    event: E
    execution_id: str
    event_id: str
    consumer: str
    database: Database
    relay: OutboxRelay

    async def read(self, guard: Guard, gather: Callable[[AsyncSession, Feature], Awaitable[T]]) -> T | None:
        """What the slow work needs, gathered while the feature is current; None when it is not, or when
        this consumer has handled the message already (a redelivery after the commit, before the ack)."""
        async with self.database.transaction() as session:
            feature = await find_feature(session, self.execution_id)
            if feature is None or not guard(feature):
                return None
            if await was_processed(session, self.consumer, self.event_id):
                return None
            return await gather(session, feature)

    async def feature(self, guard: Guard) -> Feature | None:
        """The feature, when it is current and the message not yet handled (see `read`)."""

        async def itself(_: AsyncSession, feature: Feature) -> Feature:
            return feature

        return await self.read(guard, itself)

    async def commit(self, guard: Guard, effect: Effect) -> bool:
        """Record the outcome: mark the message handled and, if the feature is still current, apply
        `effect` (state, status change, next events) in the same transaction. False when nothing applied."""
        async with self.database.transaction() as session:
            if not await claim_message(session, self.consumer, self.event_id):
                return False
            feature = await find_feature(session, self.execution_id)
            if feature is None or not guard(feature):
                return False
            await _apply(effect, session, feature)
        self.relay.wake()
        return True

    async def fail(self, reason: str, *, effect: Effect | None = None) -> None:
        """Fail the feature (if it has not ended) with `reason`, applying `effect` first (e.g. keep the
        transcript of the attempt that failed)."""
        log.warning(
            "step.feature_failed", consumer=self.consumer, execution_id=self.execution_id, reason=reason
        )
        async with self.database.transaction() as session:
            feature = await find_feature(session, self.execution_id)
            if feature is not None and effect is not None:
                await _apply(effect, session, feature)
            await fail_feature(session, self.execution_id, reason)
        self.relay.wake()


async def _apply(effect: Effect, session: AsyncSession, feature: Feature) -> None:
    outcome = effect(session, feature)
    if inspect.isawaitable(outcome):
        await outcome


StepHandler = Callable[[Step[Any]], Awaitable[None]]


class Steps:
    """Turns a service's step handlers into bus handlers for one consumer each."""

    def __init__(self, database: Database, relay: OutboxRelay) -> None:
        self._database = database
        self._relay = relay

    def handler(
        self, consumer: str, event_type: type[E], handle: Callable[[Step[E]], Awaitable[None]]
    ) -> Handler:
        async def on_delivery(delivery: Delivery) -> None:
            envelope = delivery.envelope
            event = envelope.payload
            if not isinstance(event, event_type):
                raise PoisonMessage(f"{consumer} handles {event_type.__name__}, not {envelope.type}")
            step: Step[E] = Step(
                cast(E, event),
                envelope.execution_id,
                envelope.event_id,
                consumer,
                self._database,
                self._relay,
            )
            try:
                await handle(step)
            except PermanentError as error:
                await step.fail(str(error))

        return on_delivery
