"""The transactional outbox relay: publishes committed events, so a crash between commit and publish
loses nothing.

Every service process runs one relay. After a commit the writer calls `wake()`; the relay also polls, since
nothing else tells it about rows another process (or a crashed predecessor) left behind. On PostgreSQL
`FOR UPDATE SKIP LOCKED` lets relays of many replicas share the table without publishing a row twice at
once; a row published twice anyway (crash after publish, before the mark) carries the same event id and is
dropped by JetStream's de-duplication window, and consumers are idempotent beyond it.

A batch is published concurrently, each feature's events still one after another in the order they were
written (a bus round trip per message would otherwise bound the rate the gateway accepts work at), and
marked published by one statement.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import Row, select, update

from service_feature.bus.base import Bus
from service_feature.events import Envelope
from service_feature.store.database import Database
from service_feature.store.tables import OutboxMessage, utcnow
from service_feature.tasks import stop_task

log = structlog.get_logger(__name__)


class OutboxRelay:
    def __init__(self, database: Database, bus: Bus, *, poll_seconds: float = 1.0, batch: int = 100) -> None:
        self._database = database
        self._bus = bus
        self._poll_seconds = poll_seconds
        self._batch = batch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await stop_task(self._task)
        await self.flush()  # what is committed goes out before the process exits

    async def flush(self) -> int:
        """Publish every pending row; returns how many went out."""
        sent = 0
        while True:
            count = await self._publish_batch()
            sent += count
            if count < self._batch:
                return sent

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_seconds)
            self._wakeup.clear()
            try:
                await self.flush()
            except Exception as error:
                log.warning("outbox.publish_failed", error=repr(error))

    async def _publish_batch(self) -> int:
        async with self._database.transaction() as session:
            query = (
                select(OutboxMessage.id, OutboxMessage.subject, OutboxMessage.envelope)
                .where(OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.id)
                .limit(self._batch)
            )
            if self._database.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).all()
            if not rows:
                return 0
            await self._publish_all(rows)
            published = (
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([row.id for row in rows]))
                .values(published_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            await session.execute(published)
            return len(rows)

    async def _publish_all(self, rows: Sequence[Row[Any]]) -> None:
        """Every row on the bus: features side by side, each feature's rows in order. Every publish is
        let finish before a failure is raised, so none is left running once the batch is given up."""
        in_order: dict[str, list[Row[Any]]] = {}
        for row in rows:
            in_order.setdefault(str(row.envelope.get("execution_id")), []).append(row)
        outcomes = await asyncio.gather(
            *(self._publish_in_order(feature_rows) for feature_rows in in_order.values()),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _publish_in_order(self, rows: Sequence[Row[Any]]) -> None:
        for row in rows:
            await self._bus.publish(row.subject, Envelope.model_validate(row.envelope))
