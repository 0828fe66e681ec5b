"""How a stream reads the event log, on SQLite and on PostgreSQL: pages in id order, one feature's or one
submitter's entries, the end after a terminal status, and no entry skipped when transactions commit out
of id order (PostgreSQL)."""

from collections.abc import AsyncIterator

import pytest

from service_feature.gateway.streams import LogReader, StreamSettings
from service_feature.lifecycle import FeatureStatus
from service_feature.models import FeatureRequest
from service_feature.store.database import Database, upgrade
from service_feature.store.features import append_event, create_feature, events_of, find_feature, move
from tests.support.platform import feature_request


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await upgrade(database.engine)
    yield database
    await database.close()


def _settings(**overrides: float) -> StreamSettings:
    return StreamSettings.model_validate({"page_size": 2, "settle_seconds": 60.0, **overrides})


async def _create(database: Database, execution_id: str, owner: str | None = None) -> None:
    request = FeatureRequest.model_validate(feature_request("https://example.com/demo.git", execution_id))
    async with database.transaction() as session:
        await create_feature(session, request, announce=False, submitted_by=owner)


async def _move(database: Database, execution_id: str, *targets: FeatureStatus) -> None:
    for target in targets:
        async with database.transaction() as session:
            feature = await find_feature(session, execution_id)
            assert feature is not None
            move(session, feature, target)


async def _all_ids(database: Database, execution_id: str) -> list[int]:
    async with database.transaction() as session:
        return [event.id for event in await events_of(session, execution_id)]


async def test_a_feature_is_read_page_by_page_to_its_end(database: Database) -> None:
    await _create(database, "f1")
    await _create(database, "other")
    await _move(database, "f1", FeatureStatus.checking_out, FeatureStatus.preparing)
    await _move(database, "other", FeatureStatus.checking_out)
    reader = LogReader(database, _settings(), 0, execution_id="f1")
    first = await reader.next_page()
    assert first.full
    assert first.ended_as is None
    reader.after = first.events[-1].id
    second = await reader.next_page()
    assert not second.full
    assert second.ended_as is None  # preparing is no end
    reader.after = second.events[-1].id

    await _move(database, "f1", FeatureStatus.cancelled)
    last = await reader.next_page()
    assert [event.status for event in last.events] == ["cancelled"]
    assert last.ended_as == "cancelled"
    read = [event.id for page in (first, second, last) for event in page.events]
    assert read == await _all_ids(database, "f1")


async def test_an_owner_reads_only_its_own_features(database: Database) -> None:
    await _create(database, "mine", owner="key-a")
    await _create(database, "theirs", owner="key-b")
    await _move(database, "mine", FeatureStatus.checking_out)
    await _move(database, "theirs", FeatureStatus.checking_out)
    reader = LogReader(database, _settings(page_size=100), 0, owner="key-a")
    page = await reader.next_page()
    assert {event.execution_id for event in page.events} == {"mine"}
    assert [event.id for event in page.events] == await _all_ids(database, "mine")
    assert page.ended_as is None  # a stream of many features never ends


@pytest.mark.postgres
async def test_a_later_commit_waits_for_an_earlier_insert(postgres_url: str) -> None:
    database = Database(postgres_url)
    await upgrade(database.engine)
    try:
        await _create(database, "f1")
        reader = LogReader(database, _settings(page_size=100), 0, execution_id="f1")
        reader.after = (await reader.next_page()).events[-1].id
        async with database.transaction() as slow:
            append_event(slow, "f1", "tests.completed", FeatureStatus.queued, {"order": "first"})
            await slow.flush()  # the id is taken now; the commit comes later
            async with database.transaction() as fast:
                append_event(fast, "f1", "tests.completed", FeatureStatus.queued, {"order": "second"})
            held = await reader.next_page()
            assert held.events == []
            assert held.held_back
        page = await reader.next_page()
        assert [event.detail["order"] for event in page.events] == ["first", "second"]
        assert not page.held_back
    finally:
        await database.close()
