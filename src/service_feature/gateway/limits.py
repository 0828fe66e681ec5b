"""A request body size limit for the gateway's routes (413), enforced while the body is read, so a client
cannot make the gateway buffer more than SF_MAX_BODY_BYTES whatever its Content-Length says (or omits)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from starlette.types import Message


def body_limited_route(max_bytes: int) -> type[APIRoute]:
    """An APIRoute class (for `APIRouter(route_class=...)`) refusing bodies over `max_bytes`."""

    def too_large() -> HTTPException:
        return HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"request body over {max_bytes} bytes (SF_MAX_BODY_BYTES)"
        )

    class BodyLimitedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def limited(request: Request) -> Response:
                declared = request.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise too_large()
                received = 0
                receive = request.receive

                async def counting() -> Message:
                    nonlocal received
                    message = await receive()
                    received += len(message.get("body", b""))
                    if received > max_bytes:
                        raise too_large()
                    return message

                return await handler(Request(request.scope, counting))

            return limited

    return BodyLimitedRoute
