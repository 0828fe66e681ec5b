"""The interface the executor runs tests through, whatever isolates them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

TRUNCATION_MARKER = "\n[… output truncated by service-feature: limit reached …]\n"


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 600.0
    memory_mb: int = 2048
    pids: int = 256
    cpu_seconds: int = 1200
    file_size_mb: int = 512
    tmp_size_mb: int = 256
    output_bytes: int = 1_000_000
    # One total for everything a test run may write (the workspace, /tmp, /dev/shm); 0 leaves the workspace
    # on the host's disk, bounded per file only. Its tmpfs pages count against `memory_mb` as well.
    disk_mb: int = 1024


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int | None
    output: str
    duration_seconds: float
    timed_out: bool = False
    cancelled: bool = False
    truncated: bool = False
    disk_quota_exceeded: bool = False


class Sandbox(Protocol):
    """Runs one command with the workspace as its working (and only writable) directory."""

    name: str

    async def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        cancel: asyncio.Event | None = None,
    ) -> ProcessResult: ...
