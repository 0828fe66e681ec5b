"""Cancelling a feature while its tests run, or while its base commit is being prepared, kills the execution
rather than waiting for it, and nothing is delivered."""

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.platform import (
    PlatformClient,
    feature_request,
    greeting_turns,
    running_platform,
    wait_for,
    write_script,
)

PYTEST = "python -m pytest -q -p no:cacheprovider"
# Slow on the patched run only (the base has no greeting.py), so the preparation's baseline stays quick.
SLOW_PATCHED_RUN = f"if [ -f src/demo_app/greeting.py ]; then sleep 30; fi; {PYTEST}"
# Slow on the base only: the preparation's baseline run.
SLOW_BASELINE = f"if [ ! -f src/demo_app/greeting.py ]; then sleep 30; fi; {PYTEST}"
STOPPED_WITHIN = 10.0


async def _cancel_the_running_execution(api: PlatformClient, execution_id: str, phases: set[str]) -> None:
    """Wait for the feature's execution in one of `phases`, cancel the feature, see the execution stop."""
    async with asyncio.timeout(30):
        while not (await api.get("/api/v1/executions/active")).json()["count"]:
            await asyncio.sleep(0.05)
    running = (await api.get("/api/v1/executions/active")).json()["executions"][0]
    assert running["execution_id"] == execution_id
    assert running["phase"] in phases
    cancelled_at = time.monotonic()
    assert (await api.post(f"/api/v1/features/{execution_id}/cancel")).status_code == 200
    # Stopped, not waited for: well before the 30 s sleep would end, with room for a busy machine.
    async with asyncio.timeout(STOPPED_WITHIN):
        while (await api.get("/api/v1/executions/active")).json()["count"]:
            await asyncio.sleep(0.05)
    assert time.monotonic() - cancelled_at < STOPPED_WITHIN


async def test_cancel_stops_the_running_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    slow = feature_request(origin, "slowtests", test_command=SLOW_PATCHED_RUN)
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        await api.post("/api/v1/features", json=slow)
        await wait_for(api, "slowtests", {"testing"})
        await _cancel_the_running_execution(api, "slowtests", {"tests"})
        await asyncio.sleep(1)
        feature = (await api.get("/api/v1/features/slowtests")).json()
    assert feature["status"] == "cancelled"
    assert feature["delivered_branch"] is None


async def test_cancel_stops_the_preparation_before_any_model_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    slow = feature_request(origin, "slowbase", test_command=SLOW_BASELINE)
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        await api.post("/api/v1/features", json=slow)
        await wait_for(api, "slowbase", {"preparing"})
        await _cancel_the_running_execution(api, "slowbase", {"setup", "baseline"})
        await asyncio.sleep(1)
        feature = (await api.get("/api/v1/features/slowbase")).json()
        events = (await api.get("/api/v1/features/slowbase/events")).json()["events"]
    assert feature["status"] == "cancelled"
    assert (feature["agent_turns"], feature["attempts"], feature["preparation"]) == (0, 0, None)
    assert "environment.completed" not in [e["type"] for e in events]
