"""The global kill switch: one switch stops every autonomous action at once.

The database is the source of truth and the audit log (`kill_switch_changes`: who, when, why). The current
state is mirrored into the bus's replicated key-value bucket, which every service replica polls several
times a second, so a change reaches all of them within a second. The check is fail-closed: a replica that
cannot read the state, or has not read it recently, acts as if the switch were engaged.

While engaged, work does not fail: each step waits at its next gate (before a checkout, a model call, a
test run, a delivery) and resumes when the switch is released; running executions are stopped and rerun.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime

import structlog
from pydantic import BaseModel
from sqlalchemy import select

from service_feature.bus.base import Bus
from service_feature.store.database import Database
from service_feature.store.tables import KillSwitchChange, utcnow
from service_feature.tasks import stop_task

log = structlog.get_logger(__name__)

CONTROL_KEY = "killswitch"
_POLL_SECONDS = 0.25
_STALE_SECONDS = 2.0


class SwitchState(BaseModel):
    engaged: bool
    reason: str = ""
    actor: str = ""
    changed_at: datetime | None = None


RELEASED = SwitchState(engaged=False, reason="never engaged")


async def change_switch(
    database: Database, bus: Bus, *, engaged: bool, reason: str, actor: str
) -> SwitchState:
    """Record the change (durable, audited) and then publish it to every replica."""
    async with database.transaction() as session:
        change = KillSwitchChange(engaged=engaged, reason=reason, actor=actor, created_at=utcnow())
        session.add(change)
    state = SwitchState(engaged=engaged, reason=reason, actor=actor, changed_at=change.created_at)
    await bus.control_put(CONTROL_KEY, state.model_dump_json().encode())
    log.warning("killswitch.changed", engaged=engaged, reason=reason, actor=actor)
    return state


async def recorded_state(database: Database) -> SwitchState:
    async with database.transaction() as session:
        query = select(KillSwitchChange).order_by(KillSwitchChange.id.desc()).limit(1)
        latest = (await session.execute(query)).scalar_one_or_none()
    if latest is None:
        return RELEASED
    return SwitchState(
        engaged=latest.engaged, reason=latest.reason, actor=latest.actor, changed_at=latest.created_at
    )


async def audit_log(database: Database, limit: int = 100) -> list[SwitchState]:
    async with database.transaction() as session:
        query = select(KillSwitchChange).order_by(KillSwitchChange.id.desc()).limit(limit)
        rows = (await session.execute(query)).scalars()
        return [
            SwitchState(engaged=r.engaged, reason=r.reason, actor=r.actor, changed_at=r.created_at)
            for r in rows
        ]


class KillSwitch:
    """One replica's fail-closed view of the switch."""

    def __init__(self, database: Database, bus: Bus) -> None:
        self._database = database
        self._bus = bus
        self._state: SwitchState | None = None
        self._read_at = 0.0
        self._released = asyncio.Event()
        self._on_engage: list[Callable[[], object]] = []
        self._task: asyncio.Task[None] | None = None

    def on_engage(self, callback: Callable[[], object]) -> None:
        """Call `callback` whenever this replica sees the switch engage (e.g. stop running executions)."""
        self._on_engage.append(callback)

    @property
    def state(self) -> SwitchState:
        return self._state or SwitchState(engaged=True, reason="kill switch state unknown (fail-closed)")

    @property
    def engaged(self) -> bool:
        fresh = time.monotonic() - self._read_at < _STALE_SECONDS
        return self._state is None or self._state.engaged or not fresh

    async def start(self) -> None:
        if await self._bus.control_get(CONTROL_KEY) is None:
            # A new deployment: mirror the database's state (released when nothing was ever recorded).
            state = await recorded_state(self._database)
            await self._bus.control_put(CONTROL_KEY, state.model_dump_json().encode())
        await self.refresh()
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        await stop_task(self._task)

    async def wait_released(self) -> None:
        """Return at once when released; otherwise wait (paused, not failed) until it is."""
        while self.engaged:
            self._released.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), timeout=_POLL_SECONDS * 2)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(_POLL_SECONDS)
            await self.refresh()

    async def refresh(self) -> None:
        was_engaged = self.engaged
        try:
            raw = await self._bus.control_get(CONTROL_KEY)
        except Exception as error:  # unreadable means engaged: the staleness check sees to that
            log.warning("killswitch.unreadable", error=repr(error))
            return
        self._state = SwitchState.model_validate_json(raw) if raw else None
        self._read_at = time.monotonic()
        if self.engaged and not was_engaged:
            for callback in self._on_engage:
                callback()
        if not self.engaged:
            self._released.set()
