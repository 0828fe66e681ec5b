"""The executor's answers to the agent's `run_tests` over an in-memory bus: whatever goes wrong, the agent
gets an errored result at once (never a silence it would wait out until its tool timeout), saying why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service_feature.config import ExecutorSettings
from service_feature.events import RunSpec, Subjects
from service_feature.executor.runner import TestRunner
from service_feature.executor.sandbox.factory import create_sandbox, limits_from_settings
from service_feature.executor.service import ExecutorService
from service_feature.git import Git
from service_feature.models import Language, TestResult
from service_feature.store import Database, upgrade
from service_feature.store.outbox import OutboxRelay
from tests.support.bus import InMemoryBus


class _Switch:
    engaged = False

    async def wait_released(self) -> None:
        """Never engaged here."""

    def on_engage(self, callback: object) -> None:
        """Nothing to stop here."""


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[InMemoryBus]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade(database.engine)
    bus = InMemoryBus()
    settings = ExecutorSettings(SANDBOX_ENABLED=False)  # type: ignore[call-arg]
    runner = TestRunner(
        Git(tmp_path / "git", timeout=30), create_sandbox(settings), limits_from_settings(settings), 1
    )
    service = ExecutorService(database, bus, OutboxRelay(database, bus), runner, _Switch(), 1)  # type: ignore[arg-type]
    await service.start()
    yield bus
    await database.close()


async def _ask(bus: InMemoryBus, data: bytes) -> TestResult:
    return TestResult.model_validate_json(await bus.request(Subjects.EXECUTOR_RUN, data, timeout=600))


async def test_a_request_that_does_not_parse_is_answered_with_the_reason(bus: InMemoryBus) -> None:
    result = await _ask(bus, b'{"execution_id": "x"}')
    assert (result.exit_code, result.errored) == (None, 1)
    assert result.output_tail.startswith("test run failed: ")
    assert "repository_url" in result.output_tail


async def test_a_run_that_cannot_start_is_answered_with_the_reason(bus: InMemoryBus, tmp_path: Path) -> None:
    spec = RunSpec(
        execution_id="x1",
        repository_url="https://127.0.0.1:1/nowhere.git",  # refused before git connects: an internal address
        base_commit="0" * 40,
        diff="",
        language=Language.python,
    )
    result = await _ask(bus, spec.model_dump_json().encode())
    assert not result.succeeded
    assert result.errored == 1
    assert "internal address" in result.output_tail
