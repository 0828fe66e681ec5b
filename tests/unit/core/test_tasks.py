"""stop_task ends a loop even when a cancellation is swallowed, as asyncio.wait_for can do on 3.11."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from service_feature.tasks import stop_task


async def test_a_loop_that_swallows_one_cancellation_is_still_stopped() -> None:
    swallowed = 0

    async def poll() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what wait_for does when the cancellation races its completion

    task = asyncio.create_task(poll())
    await asyncio.sleep(0.02)

    await asyncio.wait_for(stop_task(task), timeout=10)

    assert task.cancelled()
    assert swallowed == 1


async def test_a_task_that_failed_is_reported_not_raised() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken(), name="relay")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        await stop_task(task)

    assert [(log["event"], log["task"]) for log in logs] == [("task.failed_before_stop", "relay")]


async def test_nothing_to_stop() -> None:
    await stop_task(None)
