"""The gateway's all-or-nothing submission write on SQLite and on PostgreSQL (a database of its own): the
feature, its log entry and its request event together; a taken id; the per-key open count the database
keeps through every writer."""

import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import select

from service_feature.events import Envelope, Subjects
from service_feature.lifecycle import TERMINAL, FeatureStatus
from service_feature.models import FeatureRequest
from service_feature.store import Database, upgrade
from service_feature.store.features import (
    admit_feature,
    count_open_features,
    create_feature,
    events_of,
    find_feature,
    move,
)
from service_feature.store.tables import OutboxMessage

MIGRATION = (
    Path(__file__).resolve().parents[3]
    / "src/service_feature/store/migrations/versions/0006_open_feature_counts.py"
)


def request(execution_id: str, title: str = "T") -> FeatureRequest:
    return FeatureRequest.model_validate(
        {
            "execution_id": execution_id,
            "repository_url": "https://example.com/r.git",
            "branch": "main",
            "specification": {"title": title, "language": "python"},
        }
    )


@pytest.fixture
async def database(database_url: str) -> Database:
    db = Database(database_url)
    await upgrade(db.engine)
    yield db
    await db.close()


async def open_count(database: Database, key: str) -> int:
    async with database.transaction() as session:
        return await count_open_features(session, key)


async def test_an_admitted_feature_comes_with_its_log_entry_and_its_request_event(
    database: Database,
) -> None:
    admission = await admit_feature(database, request("adm1"), submitted_by="key1", max_open=5)
    assert admission.feature is not None
    assert (admission.feature.execution_id, admission.feature.status) == ("adm1", "queued")
    assert (admission.feature.submitted_by, admission.feature.version) == ("key1", 1)
    assert not admission.taken
    async with database.transaction() as session:
        stored = await find_feature(session, "adm1")
        assert stored is not None
        assert (stored.status, stored.submitted_by, stored.title) == ("queued", "key1", "T")
        assert stored.request == request("adm1").model_dump(mode="json")
        assert [(e.type, e.status) for e in await events_of(session, "adm1")] == [
            ("feature.accepted", "queued")
        ]
        outbox = list((await session.execute(select(OutboxMessage))).scalars())
        move(session, stored, FeatureStatus.checking_out)  # the ORM's optimistic locking takes it on
    assert [row.subject for row in outbox] == [Subjects.FEATURE_REQUESTS]
    envelope = Envelope.model_validate(outbox[0].envelope)
    assert envelope.event_id == "request-adm1"
    assert envelope.payload.type == "feature.requested"
    assert await open_count(database, "key1") == 1


async def test_a_taken_execution_id_creates_nothing_more(database: Database) -> None:
    assert (await admit_feature(database, request("adm2"), submitted_by="key1", max_open=5)).feature
    again = await admit_feature(database, request("adm2", "other"), submitted_by="key2", max_open=5)
    assert again.feature is None
    assert again.taken
    async with database.transaction() as session:
        assert len(await events_of(session, "adm2")) == 1
        assert len(list((await session.execute(select(OutboxMessage))).scalars())) == 1
        stored = await find_feature(session, "adm2")
        assert stored is not None
        assert (stored.title, stored.submitted_by) == ("T", "key1")
    assert await open_count(database, "key2") == 0


async def test_a_key_at_its_limit_is_refused_and_a_repeat_is_still_answered(database: Database) -> None:
    for n in range(2):
        assert (await admit_feature(database, request(f"lim{n}"), submitted_by="key1", max_open=2)).feature
    refused = await admit_feature(database, request("lim2"), submitted_by="key1", max_open=2)
    assert (refused.feature, refused.taken, refused.open_features) == (None, False, 2)
    repeat = await admit_feature(database, request("lim0"), submitted_by="key1", max_open=2)
    assert (repeat.feature, repeat.taken) == (None, True)
    other = await admit_feature(database, request("lim3"), submitted_by="key2", max_open=2)
    assert other.feature is not None
    async with database.transaction() as session:
        assert await find_feature(session, "lim2") is None


async def test_the_open_count_follows_every_writer_and_only_ends_count(database: Database) -> None:
    async with database.transaction() as session:
        await create_feature(session, request("orm1"), submitted_by="key1")  # the ORM, as the worker
        await create_feature(session, request("bus1"), announce=False)  # no key: counted nowhere
    await admit_feature(database, request("api1"), submitted_by="key1", max_open=5)
    assert await open_count(database, "key1") == 2
    async with database.transaction() as session:
        feature = await find_feature(session, "orm1")
        assert feature is not None
        move(session, feature, FeatureStatus.checking_out)  # open to open: no change
    assert await open_count(database, "key1") == 2
    async with database.transaction() as session:
        feature = await find_feature(session, "orm1")
        assert feature is not None
        move(session, feature, FeatureStatus.cancelled)
    assert await open_count(database, "key1") == 1
    async with database.transaction() as session:
        feature = await find_feature(session, "api1")
        assert feature is not None
        await session.delete(feature)
    assert await open_count(database, "key1") == 0
    assert (await admit_feature(database, request("api2"), submitted_by="key1", max_open=1)).feature


async def test_upgrading_counts_the_features_already_open(database_url: str) -> None:
    database = Database(database_url)
    try:
        await upgrade(database.engine, "0005")
        async with database.transaction() as session:
            for n in range(3):
                await create_feature(session, request(f"old{n}"), submitted_by="key1")
            ended = await find_feature(session, "old0")
            assert ended is not None
            move(session, ended, FeatureStatus.failed, reason="gone")
        await upgrade(database.engine)
        assert await open_count(database, "key1") == 2
    finally:
        await database.close()


def test_the_migrations_terminal_statuses_are_the_lifecycles() -> None:
    spec = importlib.util.spec_from_file_location("migration_0006", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert set(migration.TERMINAL_STATUSES) == {status.value for status in TERMINAL}
