"""The worker's side of the preparation step on SQLite and PostgreSQL: a base that cannot be tested fails the
feature with no attempt queued, a testable one queues attempt 1, and a redelivered or stale result changes
nothing."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service_feature.config import WorkerSettings
from service_feature.events import AttemptRequested, Envelope, EnvironmentCompleted, Subjects
from service_feature.git import Git
from service_feature.lifecycle import FeatureStatus
from service_feature.models import FeatureRequest, TestResult
from service_feature.store import Database, upgrade
from service_feature.store.features import create_feature, find_feature, move
from service_feature.store.outbox import OutboxRelay
from service_feature.store.tables import Feature, OutboxMessage
from service_feature.worker.service import WorkerService
from tests.support.bus import InMemoryBus

REQUEST = FeatureRequest.model_validate(
    {
        "execution_id": "prep1",
        "repository_url": "https://example.com/r.git",
        "specification": {"title": "T", "language": "python"},
    }
)
SETUP_FAILED = "environment: dependency setup failed: `pip install -r requirements.txt` (exit 1)\nERROR: nope"
TESTABLE = TestResult(
    command="python -m pytest",
    sandbox="bwrap",
    exit_code=0,
    passed=2,
    baseline={"commit": "abc", "passed": 2, "failed": 0, "errored": 0, "cached": False},
    environment={"key": "k", "installed": True, "cached": False, "setup_seconds": 3.2},
)
UNTESTABLE = TestResult(
    command="setup",
    sandbox="bwrap",
    exit_code=None,
    errored=1,
    output_tail=SETUP_FAILED,
    untestable=SETUP_FAILED,
)


class _Switch:
    async def wait_released(self) -> None:
        """Never engaged here."""


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await upgrade(db.engine)
    async with db.transaction() as session:
        feature = await create_feature(session, REQUEST)
        move(session, feature, FeatureStatus.checking_out)
        feature.base_commit = "abc"
        move(session, feature, FeatureStatus.preparing)
    yield db
    await db.close()


@pytest.fixture
async def bus(database: Database, tmp_path: Path) -> InMemoryBus:
    """The worker's consumers, started on an in-memory bus; the outbox rows are read directly."""
    bus = InMemoryBus()
    relay = OutboxRelay(database, bus)
    worker = WorkerService(WorkerSettings(), database, bus, relay, Git(tmp_path), _Switch())  # type: ignore[arg-type]
    await worker.start()
    return bus


async def _complete(bus: InMemoryBus, result: TestResult, event_id: str = "prepared-1") -> None:
    envelope = Envelope.of(REQUEST.execution_id, EnvironmentCompleted(result=result), event_id=event_id)
    assert await bus.deliver(Subjects.ENVIRONMENT_COMPLETED, envelope) == "acked"


async def _state(database: Database) -> tuple[Feature, list[dict[str, Any]]]:
    async with database.transaction() as session:
        feature = await find_feature(session, REQUEST.execution_id)
        rows = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
        attempts = [row.envelope for row in rows if row.subject == Subjects.ATTEMPT_REQUESTED]
    assert feature is not None
    return feature, attempts


async def test_an_untestable_base_fails_the_feature_without_an_attempt(
    bus: InMemoryBus, database: Database
) -> None:
    await _complete(bus, UNTESTABLE)
    await _complete(bus, UNTESTABLE)  # redelivered: a no-op

    feature, attempts = await _state(database)
    assert feature.status == FeatureStatus.failed
    assert feature.failure_reason == SETUP_FAILED
    assert (feature.attempts, feature.agent_turns, attempts) == (0, 0, [])
    assert feature.preparation is not None
    assert feature.preparation["setup"] == "failed"
    assert feature.preparation["log_tail"].endswith("ERROR: nope")


async def test_a_testable_base_queues_attempt_one_once(bus: InMemoryBus, database: Database) -> None:
    await _complete(bus, TESTABLE)
    await _complete(bus, TESTABLE)  # redelivered
    await _complete(bus, UNTESTABLE, "prepared-again")  # stale: not preparing

    feature, attempts = await _state(database)
    assert feature.status == FeatureStatus.generating
    assert [Envelope.model_validate(row).payload for row in attempts] == [AttemptRequested(attempt=1)]
    assert feature.preparation is not None
    assert feature.preparation["setup"] == "installed"
    assert feature.preparation["baseline"]["passed"] == 2
    assert feature.failure_reason is None
