"""The kill switch's HTTP surface (the reference design's `/api/v1/killswitch/status`), served by the
gateway: the one service every deployment exposes. Reading needs a reader key, changing an admin key.
The state lives where the kill switch keeps it (database for the audit, the bus's key-value bucket for
every replica), so any gateway replica answers for all of them.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the dependency annotations.
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from service_feature.auth import Principal
from service_feature.gateway.deps import AdminDep, Gateway, GatewayDep, reader_role
from service_feature.gateway.route import GatewayRoute
from service_feature.killswitch import KillSwitch, SwitchState, audit_log, change_switch

killswitch_router = APIRouter(prefix="/api/v1/killswitch", tags=["kill switch"], route_class=GatewayRoute)
readers = [Depends(reader_role)]


class SwitchChange(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


def switch_of(gateway: Gateway) -> KillSwitch:
    if gateway.switch is None:
        raise RuntimeError(
            "the kill-switch routes need the process's KillSwitch (feature_router(switch=...))"
        )
    return gateway.switch


async def flip(gateway: Gateway, *, engaged: bool, change: SwitchChange, principal: Principal) -> SwitchState:
    """Record and publish the change, then read it back at once so this replica acts on it now."""
    switch = switch_of(gateway)
    assert gateway.bus is not None  # bound together with the switch by feature_router
    state = await change_switch(
        gateway.database, gateway.bus, engaged=engaged, reason=change.reason, actor=principal.name
    )
    await switch.refresh()
    return state


@killswitch_router.get("/status", dependencies=readers)
async def status(gateway: GatewayDep) -> dict[str, Any]:
    """The switch as this replica sees it (fail-closed: unknown reads as engaged)."""
    switch = switch_of(gateway)
    return switch.state.model_dump(mode="json") | {"engaged": switch.engaged}


@killswitch_router.post("/engage", response_model=SwitchState)
async def engage(change: SwitchChange, principal: AdminDep, gateway: GatewayDep) -> SwitchState:
    """Stop every autonomous action: nothing new starts, running executions stop, work pauses."""
    return await flip(gateway, engaged=True, change=change, principal=principal)


@killswitch_router.post("/release", response_model=SwitchState)
async def release(change: SwitchChange, principal: AdminDep, gateway: GatewayDep) -> SwitchState:
    """Resume: paused work continues where it stopped."""
    return await flip(gateway, engaged=False, change=change, principal=principal)


@killswitch_router.get("/audit", response_model=list[SwitchState], dependencies=readers)
async def audit(gateway: GatewayDep) -> list[SwitchState]:
    """Every engage and release, newest first: who, when, why."""
    return await audit_log(gateway.database)
