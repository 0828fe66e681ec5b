"""The kill switch's HTTP surface, served by the reviewer (the reference design's
`/api/v1/killswitch/status`).

No `from __future__ import annotations` here: FastAPI must see the dependency annotations as objects.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from service_feature.auth import Authenticator, Principal, Role
from service_feature.bus.base import Bus
from service_feature.killswitch import KillSwitch, SwitchState, audit_log, change_switch
from service_feature.store.database import Database


class SwitchChange(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


def killswitch_router(database: Database, bus: Bus, switch: KillSwitch, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/api/v1/killswitch", tags=["kill switch"])
    reader = Depends(auth.require(Role.reader))
    admin = Annotated[Principal, Depends(auth.require(Role.admin))]

    @router.get("/status", dependencies=[reader])
    async def status() -> dict[str, Any]:
        """The switch as this replica sees it (fail-closed: unknown reads as engaged)."""
        return switch.state.model_dump(mode="json") | {"engaged": switch.engaged}

    @router.post("/engage", response_model=SwitchState)
    async def engage(change: SwitchChange, principal: admin) -> SwitchState:
        """Stop every autonomous action: nothing new starts, running executions stop, work pauses."""
        state = await change_switch(database, bus, engaged=True, reason=change.reason, actor=principal.name)
        await switch.refresh()
        return state

    @router.post("/release", response_model=SwitchState)
    async def release(change: SwitchChange, principal: admin) -> SwitchState:
        """Resume: paused work continues where it stopped."""
        state = await change_switch(database, bus, engaged=False, reason=change.reason, actor=principal.name)
        await switch.refresh()
        return state

    @router.get("/audit", response_model=list[SwitchState], dependencies=[reader])
    async def audit() -> list[SwitchState]:
        """Every engage and release, newest first: who, when, why."""
        return await audit_log(database)

    return router
