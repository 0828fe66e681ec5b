"""Cancelling a feature while its tests run stops the execution within a second, and nothing is delivered."""

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.platform import feature_request, greeting_turns, running_platform, wait_for, write_script


async def test_cancel_stops_the_running_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    slow = feature_request(
        origin, "slowtests", test_command="sleep 30; python -m pytest -q -p no:cacheprovider"
    )
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        await api.post("/api/v1/features", json=slow)
        await wait_for(api, "slowtests", {"testing"})
        async with asyncio.timeout(30):
            while not (await api.get("/api/v1/executions/active")).json()["count"]:
                await asyncio.sleep(0.05)
        running = (await api.get("/api/v1/executions/active")).json()["executions"][0]
        assert running["execution_id"] == "slowtests"
        cancelled_at = time.monotonic()
        assert (await api.post("/api/v1/features/slowtests/cancel")).status_code == 200
        async with asyncio.timeout(1.5):
            while (await api.get("/api/v1/executions/active")).json()["count"]:
                await asyncio.sleep(0.05)
        assert time.monotonic() - cancelled_at < 1.5
        await asyncio.sleep(1)
        feature = (await api.get("/api/v1/features/slowtests")).json()
    assert feature["status"] == "cancelled"
    assert feature["delivered_branch"] is None
