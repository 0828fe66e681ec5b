"""The store on SQLite and on PostgreSQL (a database of its own): migrations, transitions, the outbox."""

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from service_feature.bus.base import Delivery
from service_feature.bus.embedded import EmbeddedNatsServer
from service_feature.bus.nats import NatsBus
from service_feature.events import Subjects
from service_feature.lifecycle import FeatureStatus, InvalidTransition
from service_feature.models import FeatureRequest
from service_feature.store import Database, upgrade
from service_feature.store.features import (
    claim_message,
    create_feature,
    events_of,
    fail_feature,
    find_feature,
    list_features,
    move,
)
from service_feature.store.outbox import OutboxRelay
from service_feature.store.tables import OutboxMessage

REQUEST = FeatureRequest.model_validate(
    {
        "execution_id": "store1",
        "repository_url": "https://example.com/r.git",
        "branch": "main",
        "specification": {"title": "T", "language": "python"},
    }
)


@pytest.fixture
async def database(database_url: str) -> Database:
    db = Database(database_url)
    await upgrade(db.engine)
    yield db
    await db.close()


async def test_migrations_are_idempotent_and_the_database_is_ready(database: Database) -> None:
    await upgrade(database.engine)
    assert await database.ready()


async def test_a_feature_its_log_and_its_event_commit_together(database: Database) -> None:
    async with database.transaction() as session:
        await create_feature(session, REQUEST)
    async with database.transaction() as session:
        feature = await find_feature(session, "store1")
        assert feature is not None
        assert feature.status == "queued"
        move(session, feature, FeatureStatus.checking_out)
        outbox = list((await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())
        assert [row.subject for row in outbox] == [Subjects.FEATURE_REQUESTS, Subjects.status("store1")]
    async with database.transaction() as session:
        events = await events_of(session, "store1")
        assert [(e.type, e.status) for e in events] == [
            ("feature.accepted", "queued"),
            ("status.checking_out", "checking_out"),
        ]
        rows, total = await list_features(session, status=FeatureStatus.checking_out, limit=10, offset=0)
        assert total == 1
        assert rows[0].execution_id == "store1"


async def test_a_rolled_back_transition_leaves_no_trace(database: Database) -> None:
    async with database.transaction() as session:
        await create_feature(session, REQUEST)
    async with database.sessions() as session:
        feature = await find_feature(session, "store1")
        assert feature is not None
        move(session, feature, FeatureStatus.checking_out)
        with pytest.raises(InvalidTransition):
            move(session, feature, FeatureStatus.delivered)
        await session.rollback()
    async with database.transaction() as session:
        feature = await find_feature(session, "store1")
        assert feature is not None
        assert feature.status == "queued"
        assert len(await events_of(session, "store1")) == 1


async def test_processed_messages_are_claimed_once(database: Database) -> None:
    async with database.transaction() as session:
        assert await claim_message(session, "worker", "event-1")
        assert not await claim_message(session, "worker", "event-1")
        assert await claim_message(session, "reviewer", "event-1")


async def test_concurrent_writers_cannot_both_move_a_feature(database: Database) -> None:
    async with database.transaction() as session:
        await create_feature(session, REQUEST)
    first = database.sessions()
    second = database.sessions()
    one = await find_feature(first, "store1")
    two = await find_feature(second, "store1")
    assert one is not None
    assert two is not None
    move(first, one, FeatureStatus.checking_out)
    await first.commit()
    move(second, two, FeatureStatus.cancelled)
    with pytest.raises(StaleDataError):
        await second.commit()
    await first.close()
    await second.close()


async def test_fail_feature_only_fails_active_features(database: Database) -> None:
    async with database.transaction() as session:
        await create_feature(session, REQUEST)
    async with database.transaction() as session:
        assert await fail_feature(session, "store1", "broken")
        assert not await fail_feature(session, "unknown", "broken")
    async with database.transaction() as session:
        assert not await fail_feature(session, "store1", "again")
        feature = await find_feature(session, "store1")
        assert feature is not None
        assert feature.failure_reason == "broken"


async def test_the_outbox_relay_publishes_committed_events(
    database: Database, nats_server: EmbeddedNatsServer
) -> None:
    bus = await NatsBus.connect(nats_server.url, name="test")
    received: list[Delivery] = []
    got = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        received.append(delivery)
        got.set()

    await bus.consume(Subjects.FEATURE_REQUESTS, "test", handler)
    async with database.transaction() as session:
        await create_feature(session, REQUEST)
    relay = OutboxRelay(database, bus, poll_seconds=0.2)
    relay.start()
    await asyncio.wait_for(got.wait(), 10)
    assert received[0].envelope.execution_id == "store1"
    assert received[0].envelope.event_id == "request-store1"
    await relay.stop()
    async with database.transaction() as session:
        rows = list((await session.execute(select(OutboxMessage))).scalars())
        assert all(row.published_at is not None for row in rows)
    assert await relay.flush() == 0
    await bus.close()
