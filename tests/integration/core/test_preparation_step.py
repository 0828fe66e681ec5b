"""The worker's side of the preparation step on SQLite and PostgreSQL: a base that cannot be tested fails the
feature with no attempt queued, a testable one queues attempt 1, and a redelivered or stale result changes
nothing."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service_feature.bus.base import Delivery
from service_feature.events import Envelope, EventType, Subjects
from service_feature.git import Git
from service_feature.lifecycle import FeatureStatus
from service_feature.models import FeatureRequest, TestResult
from service_feature.store import Database, upgrade
from service_feature.store.features import create_feature, find_feature, move
from service_feature.store.tables import Feature, OutboxMessage
from service_feature.worker.service import WorkerService

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


class _Relay:
    def wake(self) -> None:
        """Nothing to publish in this test: the outbox rows are read directly."""


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
def worker(database: Database, tmp_path: Path) -> WorkerService:
    settings: Any = object()  # the handler under test reads no setting
    return WorkerService(settings, database, object(), _Relay(), Git(tmp_path), object())  # type: ignore[arg-type]


def _completed(result: TestResult, event_id: str = "prepared-1") -> Delivery:
    envelope = Envelope(
        event_id=event_id,
        type=EventType.ENVIRONMENT_COMPLETED,
        execution_id=REQUEST.execution_id,
        payload={"result": result.model_dump(mode="json")},
    )
    return Delivery(envelope=envelope, subject=Subjects.ENVIRONMENT_COMPLETED, attempt=1)


async def _state(database: Database) -> tuple[Feature, list[dict[str, Any]]]:
    async with database.transaction() as session:
        feature = await find_feature(session, REQUEST.execution_id)
        rows = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
        attempts = [row.envelope for row in rows if row.subject == Subjects.ATTEMPT_REQUESTED]
    assert feature is not None
    return feature, attempts


async def test_an_untestable_base_fails_the_feature_without_an_attempt(
    worker: WorkerService, database: Database
) -> None:
    await worker.handle_environment_completed(_completed(UNTESTABLE))
    await worker.handle_environment_completed(_completed(UNTESTABLE))  # redelivered: a no-op

    feature, attempts = await _state(database)
    assert feature.status == FeatureStatus.failed
    assert feature.failure_reason == SETUP_FAILED
    assert (feature.attempts, feature.agent_turns, attempts) == (0, 0, [])
    assert feature.preparation is not None
    assert feature.preparation["setup"] == "failed"
    assert feature.preparation["log_tail"].endswith("ERROR: nope")


async def test_a_testable_base_queues_attempt_one_once(worker: WorkerService, database: Database) -> None:
    await worker.handle_environment_completed(_completed(TESTABLE))
    await worker.handle_environment_completed(_completed(TESTABLE))  # redelivered
    await worker.handle_environment_completed(
        _completed(UNTESTABLE, "prepared-again")
    )  # stale: not preparing

    feature, attempts = await _state(database)
    assert feature.status == FeatureStatus.generating
    assert [envelope["payload"] for envelope in attempts] == [{"attempt": 1}]
    assert feature.preparation is not None
    assert feature.preparation["setup"] == "installed"
    assert feature.preparation["baseline"]["passed"] == 2
    assert feature.failure_reason is None
