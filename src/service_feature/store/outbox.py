"""The transactional outbox relay: publishes committed events, so a crash between commit and publish
loses nothing.

Every service process runs one relay. After a commit the writer calls `wake()`; the relay also polls, since
nothing else tells it about rows another process (or a crashed predecessor) left behind. On PostgreSQL
`FOR UPDATE SKIP LOCKED` lets relays of many replicas share the table without publishing a row twice at
once; a row published twice anyway (crash after publish, before the mark) carries the same event id and is
dropped by JetStream's de-duplication window, and consumers are idempotent beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy import select

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
                select(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.id)
                .limit(self._batch)
            )
            if self._database.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = list((await session.execute(query)).scalars())
            for row in rows:
                await self._bus.publish(row.subject, Envelope.model_validate(row.envelope))
                row.published_at = utcnow()
            return len(rows)
