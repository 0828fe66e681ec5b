"""Helpers to run the real platform in a test: a throwaway origin repository, a scripted agent, the
embedded platform in-process (private nats-server, SQLite or a PostgreSQL database of its own)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_feature.bus.embedded import free_port
from service_feature.config import CommonSettings
from service_feature.demo import create_origin
from service_feature.runtime import Platform

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GREETING = """def greet(name: str) -> str:
    return f"Hello, {name}!"
"""
GREETING_TEST = """from demo_app.greeting import greet


def test_greet() -> None:
    assert greet("Ada") == "Hello, Ada!"
"""


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def turn(*calls: dict[str, Any], text: str = "") -> dict[str, Any]:
    return {"text": text, "tool_calls": list(calls)}


def greeting_turns(greeting: str = GREETING) -> list[dict[str, Any]]:
    return [
        turn(call("list_files", path=".")),
        turn(
            call("write_file", path="src/demo_app/greeting.py", content=greeting),
            call("write_file", path="tests/test_greeting.py", content=GREETING_TEST),
        ),
        turn(call("finish", summary="added greet()")),
    ]


def write_script(
    directory: Path, turns: list[dict[str, Any]], name: str = "default", latency_ms: int = 0
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"turns": turns, "latency_ms": latency_ms}))
    return directory


def feature_request(
    repository: Path | str, execution_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    request: dict[str, Any] = json.loads((EXAMPLES / "demo-feature.json").read_text())
    request["repository_url"] = str(repository)
    if execution_id:
        request["execution_id"] = execution_id
    else:
        request.pop("execution_id")
    request.update(overrides)
    return request


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return create_origin(EXAMPLES / "demo-repo", tmp_path / "origin")


@asynccontextmanager
async def running_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path, **env: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = {
        "SF_DATA_DIR": str(tmp_path / "data"),
        "ALLOW_LOCAL_REPOSITORIES": "true",
        "LLM_PROVIDER": "scripted",
        "LLM_SCRIPT": str(scripts),
        "SF_ACK_WAIT_SECONDS": "5",
        **env,
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    platform = Platform(port=port, settings=CommonSettings())
    await platform.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        await platform.stop()


async def wait_for(
    client: httpx.AsyncClient, execution_id: str, statuses: set[str], timeout: float = 60.0
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            response = await client.get(f"/api/v1/features/{execution_id}")
            if response.status_code == 200 and response.json()["status"] in statuses:
                return dict(response.json())
            await asyncio.sleep(0.1)


FINAL = {"delivered", "failed", "rejected", "cancelled", "awaiting_approval"}
