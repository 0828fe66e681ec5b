"""Stopping a background loop for sure.

On Python 3.11 `asyncio.wait_for` can swallow a cancellation that arrives just as the awaited thing completes
(CPython gh-86296, fixed in 3.12). A polling loop cancelled at that moment carries on, and the usual
`task.cancel(); await task` then waits forever: a shutdown that hangs, seen under load in the tests (the
process logged `platform.stopping` and never exited). `stop_task` cancels again until the task is done.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

_RETRY_SECONDS = 0.5

log = structlog.get_logger(__name__)


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (again, while it keeps running) and wait until it has ended."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_RETRY_SECONDS)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("task.failed_before_stop", task=task.get_name(), error=repr(error))
