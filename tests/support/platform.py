"""Helpers to run the real platform in a test: a throwaway origin repository, a scripted agent, the
embedded platform in-process (private nats-server, SQLite or a PostgreSQL database of its own), and an
HTTP client that sends an admin API key (`client_as` makes clients of other roles)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_feature.auth import Role, generate_key, issue_key
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


def demo_origin_with(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    """The demo project with `files` written over it, as a bare origin under `tmp_path / name`."""
    template = tmp_path / f"{name}-template"
    shutil.copytree(EXAMPLES / "demo-repo", template)
    for path, content in files.items():
        (template / path).write_text(content)
    return create_origin(template, tmp_path / name)


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return create_origin(EXAMPLES / "demo-repo", tmp_path / "origin")


class KeyClient(httpx.AsyncClient):
    """An HTTP client that sends one API key; `key_id` names the key (as in `submitted_by`)."""

    def __init__(self, base_url: str, key: str, key_id: str | None) -> None:
        super().__init__(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {key}"})
        self.key = key
        self.key_id = key_id


class PlatformClient(KeyClient):
    """The admin's client of a running platform; `client_as` makes clients with keys of other roles."""

    def __init__(self, platform: Platform, stack: AsyncExitStack, base_url: str, admin_key: str) -> None:
        super().__init__(base_url, admin_key, None)
        self.platform = platform
        self._stack = stack

    async def client_as(self, role: Role, name: str = "test") -> KeyClient:
        assert self.platform.database is not None
        issued = await issue_key(self.platform.database, name=name, role=role)
        client = KeyClient(str(self.base_url), issued.secret, issued.id)
        return await self._stack.enter_async_context(client)


@asynccontextmanager
async def running_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path, **env: str
) -> AsyncIterator[PlatformClient]:
    admin_key = generate_key()
    settings = {
        "SF_DATA_DIR": str(tmp_path / "data"),
        "ALLOW_LOCAL_REPOSITORIES": "true",
        "LLM_PROVIDER": "scripted",
        "LLM_SCRIPT": str(scripts),
        "SF_ACK_WAIT_SECONDS": "5",
        "SF_ADMIN_KEY": admin_key,
        "SERVER_ADDRESS": "127.0.0.1:0",  # loopback, on a port the system picks when binding
        **env,
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    platform = Platform(settings=CommonSettings())
    await platform.start()
    try:
        url = f"http://127.0.0.1:{platform.bound_port}"
        async with AsyncExitStack() as stack, PlatformClient(platform, stack, url, admin_key) as client:
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
