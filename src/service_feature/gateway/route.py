"""The gateway's route class: a request that does not validate gets a 422 that always renders. FastAPI's
own handler echoes the input and fails with a 500 on a lone surrogate such as `"\\ud800"`, which JSON
allows and UTF-8 cannot encode."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: the same document, and a lone surrogate stays a
    `\\ud800` escape instead of failing to encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def refuse_invalid(error: RequestValidationError) -> Response:
    """FastAPI's 422 body (`{"detail": [...]}`), rendered so that any input it echoes can be sent."""
    return AsciiJSONResponse(
        {"detail": jsonable_encoder(error.errors())}, status.HTTP_422_UNPROCESSABLE_CONTENT
    )


class GatewayRoute(APIRoute):
    """The route class of every gateway router (`APIRouter(route_class=GatewayRoute)`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def serve(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return refuse_invalid(error)

        return serve
