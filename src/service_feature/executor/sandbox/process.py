"""Plain process runner: no isolation, only limits on time and output and a whole-group kill.

Used when `SANDBOX_ENABLED=false` is set explicitly; the hardened backends wrap their command line
around `run_captured`, which is shared so that time, output and kill handling are written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from service_feature.executor.sandbox.base import TRUNCATION_MARKER, Limits, ProcessResult
from service_feature.processes import kill_group

_READ_CHUNK = 65536


async def run_captured(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    limits: Limits,
    cancel: asyncio.Event | None = None,
    pass_fds: Sequence[int] = (),
) -> ProcessResult:
    """Run argv in a new session, capture stdout+stderr up to the output limit, kill the group on expiry."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    assert process.stdout is not None
    captured = bytearray()
    truncated = False

    async def pump() -> None:
        nonlocal truncated
        assert process.stdout is not None
        while chunk := await process.stdout.read(_READ_CHUNK):
            room = limits.output_bytes - len(captured)
            if room > 0:
                captured.extend(chunk[:room])
            if len(chunk) > room:
                truncated = True  # keep draining so the child never blocks on a full pipe

    reader = asyncio.create_task(pump())
    waiter = asyncio.create_task(process.wait())
    try:
        timed_out, cancelled = await wait_or_stop(waiter, limits.wall_seconds, cancel)
        if timed_out or cancelled:
            kill_group(process.pid)
            await waiter
    finally:
        if not waiter.done():
            kill_group(process.pid)
            waiter.cancel()
    # A daemon that escaped the wait may keep the pipe open: the group kill above closes it; cap the wait.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader, timeout=5)
    if not reader.done():
        reader.cancel()
    text = captured.decode("utf-8", errors="replace")
    if truncated:
        text += TRUNCATION_MARKER
    return ProcessResult(
        exit_code=process.returncode,
        output=text,
        duration_seconds=time.monotonic() - started,
        timed_out=timed_out,
        cancelled=cancelled,
        truncated=truncated,
    )


async def wait_or_stop(
    waiter: asyncio.Future[Any], wall_seconds: float, cancel: asyncio.Event | None
) -> tuple[bool, bool]:
    """Wait for `waiter`, the wall clock or `cancel`, whichever comes first: (timed_out, cancelled)."""
    stopper = asyncio.create_task(cancel.wait()) if cancel else None
    try:
        pending = {waiter, stopper} if stopper else {waiter}
        done, _ = await asyncio.wait(pending, timeout=wall_seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stopper:
            stopper.cancel()
    if waiter in done:
        return False, False
    return not done, bool(done)


class ProcessSandbox:
    """No isolation at all: only for `SANDBOX_ENABLED=false`, which must be chosen explicitly."""

    name = "process"

    async def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        cancel: asyncio.Event | None = None,
    ) -> ProcessResult:
        return await run_captured(argv, cwd=workdir, env=env, limits=limits, cancel=cancel)
