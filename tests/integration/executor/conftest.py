"""Fixtures for the sandbox tests: the real bubblewrap sandbox, small limits, and host-side checks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from service_feature.executor.sandbox.base import Limits
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from tests.support.processes import host_processes


@pytest.fixture(scope="session")
def bwrap_sandbox() -> BwrapSandbox:
    """The sandbox under test; skipped without bubblewrap, unless SF_REQUIRE_BWRAP=1 (CI): then it fails."""
    error = BwrapSandbox.probe_error()
    if error is not None:
        if os.environ.get("SF_REQUIRE_BWRAP") == "1":
            pytest.fail(f"SF_REQUIRE_BWRAP=1 but bubblewrap cannot run here: {error}")
        pytest.skip(f"bubblewrap cannot run here: {error}")
    return BwrapSandbox()


@pytest.fixture
def limits() -> Limits:
    return Limits(wall_seconds=20, memory_mb=256, pids=64, cpu_seconds=30, tmp_size_mb=16, output_bytes=65536)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def processes_with() -> Callable[[str], list[str]]:
    """Host processes whose command line contains a marker: what must not survive a run."""

    def matching(marker: str) -> list[str]:
        cmdlines = (raw.replace(b"\0", b" ").decode(errors="replace") for _, raw in host_processes())
        return [cmdline for cmdline in cmdlines if marker in cmdline]

    return matching
