"""What the gateway's routes depend on, as `Annotated` aliases (the FastAPI full-stack template's style):
`GatewayDep`, `SessionDep`, and the caller as `AnyoneDep` (submitter or reader), `SubmitterDep`, `AdminDep`
(401 without a valid key, 403 for another role; admin passes every role check). The key comes from the
`Authorization: Bearer` header or, on GET and HEAD only, from the web dashboard's session cookie, so a
browser's EventSource or fetch reads the API as the signed-in key while every write still needs the
header (see `auth.cookie_credentials`).

The routes are module-level; the process's `Gateway` (its settings, database, outbox relay, bus and kill
switch) reaches them at request time: `gateway.routes.feature_router(...)` includes them under a
`GatewayBinding` router dependency that leaves it on each request. A binding per router rather than one
`app.state`: the composition root builds the app from routers, and a test may run several platforms in
one process.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the dependency annotations. The
# dependencies are coroutines even where they need not be: FastAPI runs plain functions in its thread pool.
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.ext.asyncio import AsyncSession

from service_feature.auth import Principal, Role, authenticate, bearer, check_role
from service_feature.bus.base import Bus
from service_feature.config import GatewaySettings
from service_feature.killswitch import KillSwitch
from service_feature.ratelimit import RateLimiter
from service_feature.store.database import Database
from service_feature.store.outbox import OutboxRelay


@dataclass(frozen=True)
class Gateway:
    """One gateway process's collaborators, shared by every request it serves."""

    settings: GatewaySettings
    database: Database
    relay: OutboxRelay
    submissions: RateLimiter
    bus: Bus | None = None
    switch: KillSwitch | None = None

    @classmethod
    def create(
        cls,
        settings: GatewaySettings,
        database: Database,
        relay: OutboxRelay,
        *,
        bus: Bus | None = None,
        switch: KillSwitch | None = None,
    ) -> "Gateway":
        submissions = RateLimiter("submit", settings.submit_rate_per_minute, settings.redis_url)
        return cls(settings, database, relay, submissions, bus, switch)


class GatewayBinding:
    """A router-level dependency binding one Gateway to the routes included with it: it leaves the gateway
    on the request's state. FastAPI solves a router's dependencies before the route's own parameters, so
    `gateway_of` finds it there."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, request: Request) -> None:
        request.state.gateway = self.gateway


async def gateway_of(request: Request) -> Gateway:
    """The Gateway that `GatewayBinding` left on the request."""
    gateway: Any = getattr(request.state, "gateway", None)
    if not isinstance(gateway, Gateway):
        raise RuntimeError("a gateway route served without a Gateway: include it through feature_router(...)")
    return gateway


GatewayDep = Annotated[Gateway, Depends(gateway_of)]


async def session_of(gateway: GatewayDep) -> AsyncIterator[AsyncSession]:
    """One transaction for a read-only route, ended before the response is sent."""
    async with gateway.database.transaction() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(session_of, scope="function")]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def principal_of(request: Request, gateway: GatewayDep, credentials: Credentials) -> Principal:
    return await authenticate(request, gateway.database, credentials)


PrincipalDep = Annotated[Principal, Depends(principal_of)]


async def any_role(principal: PrincipalDep) -> Principal:
    return check_role(principal, Role.submitter, Role.reader)


async def reader_role(principal: PrincipalDep) -> Principal:
    return check_role(principal, Role.reader)


async def submitter_role(principal: PrincipalDep) -> Principal:
    return check_role(principal, Role.submitter)


async def admin_role(principal: PrincipalDep) -> Principal:
    return check_role(principal, Role.admin)


AnyoneDep = Annotated[Principal, Depends(any_role)]
SubmitterDep = Annotated[Principal, Depends(submitter_role)]
AdminDep = Annotated[Principal, Depends(admin_role)]
