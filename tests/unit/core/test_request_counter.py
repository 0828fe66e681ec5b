"""The request counter: route template, method and status of every request, a failing one included."""

import httpx
from fastapi import APIRouter
from prometheus_client import REGISTRY

from service_feature.http import create_app

router = APIRouter()


@router.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@router.get("/broken")
async def broken() -> None:
    raise RuntimeError("boom")


def _count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("sf_http_requests_total", labels) or 0.0


async def test_requests_are_counted_by_route_template_method_and_status() -> None:
    app = create_app("counter-test", {}, [router])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    before = {
        key: _count(*key)
        for key in (
            ("/items/{item_id}", "GET", "200"),
            ("/broken", "GET", "500"),
            ("unmatched", "GET", "404"),
        )
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/items/1")).status_code == 200
        assert (await client.get("/items/2")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get("/broken")).status_code == 500
    assert _count("/items/{item_id}", "GET", "200") == before[("/items/{item_id}", "GET", "200")] + 2
    assert _count("unmatched", "GET", "404") == before[("unmatched", "GET", "404")] + 1
    assert _count("/broken", "GET", "500") == before[("/broken", "GET", "500")] + 1
