"""The HTTP surface every service process has: `/health`, `/ready`, `/metrics`, plus its own routers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service_feature import __version__
from service_feature.metrics import HTTP_REQUESTS

ReadyCheck = Callable[[], Awaitable[bool]]


def create_app(
    service: str, ready_checks: dict[str, ReadyCheck], routers: Sequence[APIRouter] = ()
) -> FastAPI:
    app = FastAPI(
        title="Service Feature",
        version=__version__,
        description="Autonomous feature building: a request becomes a tested, reviewed, delivered branch.",
    )

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        return {"status": "healthy", "service": service}

    @app.get("/ready", tags=["operations"])
    async def ready() -> JSONResponse:
        checks = {name: await check() for name, check in ready_checks.items()}
        status = 200 if all(checks.values()) else 503
        body = {"status": "ready" if status == 200 else "not ready", "service": service, "checks": checks}
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        HTTP_REQUESTS.labels(
            getattr(route, "path", "unmatched"), request.method, str(response.status_code)
        ).inc()
        return response

    for router in routers:
        app.include_router(router)
    return app
