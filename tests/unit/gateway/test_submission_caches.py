"""What a submission remembers between requests, and for how long: a valid API key (KEY_CACHE_SECONDS,
revocation through this process's ORM at once) and a repository host that passed its check
(HOST_CHECK_SECONDS, a refusal never). Time is a fake clock moved by hand."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import update

from service_feature.auth import (
    KEY_CACHE_SECONDS,
    IssuedKey,
    KeyCache,
    Principal,
    Role,
    authenticate,
    issue_key,
    key_cache,
)
from service_feature.gateway import submissions
from service_feature.git import RepositoryRefused
from service_feature.store import Database, upgrade
from service_feature.store.apikeys import revoke_key
from service_feature.store.tables import ApiKey, utcnow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await upgrade(db.engine)
    yield db
    await db.close()


def fresh_request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""})


async def who(database: Database, key: IssuedKey) -> Principal:
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=key.secret)
    return await authenticate(fresh_request(), database, credentials)


def test_a_remembered_key_expires() -> None:
    clock = Clock()
    cache = KeyCache(5.0, clock)
    principal = Principal(key_id="k1", name="ci", role=Role.submitter)
    cache.put("digest", principal)
    clock.now += 4.9
    assert cache.get("digest") == principal
    clock.now += 0.2
    assert cache.get("digest") is None


async def test_a_key_revoked_elsewhere_is_refused_within_the_cache_time(database: Database) -> None:
    clock = Clock()
    key_cache(database).clock = clock
    key = await issue_key(database, name="ci", role=Role.submitter)
    assert (await who(database, key)).key_id == key.id
    # As `service-feature apikey revoke` in another process: no ORM event here tells this one.
    async with database.engine.begin() as connection:
        await connection.execute(update(ApiKey).where(ApiKey.id == key.id).values(revoked_at=utcnow()))
    clock.now += KEY_CACHE_SECONDS / 2
    assert (await who(database, key)).key_id == key.id  # still remembered: the documented bound
    clock.now += KEY_CACHE_SECONDS / 2 + 0.01
    with pytest.raises(HTTPException) as refused:
        await who(database, key)
    assert refused.value.status_code == 401


async def test_a_key_revoked_through_this_process_is_refused_at_once(database: Database) -> None:
    key_cache(database).clock = Clock()
    key = await issue_key(database, name="ci", role=Role.reader)
    assert (await who(database, key)).role is Role.reader
    async with database.transaction() as session:
        assert await revoke_key(session, key.id)
    with pytest.raises(HTTPException) as refused:
        await who(database, key)
    assert refused.value.status_code == 401


async def test_an_unknown_key_is_not_remembered(database: Database) -> None:
    stranger = IssuedKey(id="", name="", role=Role.admin, secret="sf_not-yet-a-key")
    with pytest.raises(HTTPException):
        await who(database, stranger)
    issued = await issue_key(database, name="late", role=Role.admin, secret=stranger.secret)
    assert (await who(database, stranger)).key_id == issued.id


async def test_a_host_that_passed_is_not_resolved_again_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    resolved: list[str] = []

    async def check(url: str, *, allowlist: tuple[str, ...] = ()) -> tuple[str, ...]:
        resolved.append(url)
        return ("203.0.113.7",)

    monkeypatch.setattr(submissions, "clock", clock)
    monkeypatch.setattr(submissions, "check_repository_host", check)
    submissions.forget_host_checks()
    url = "https://forge.example/a.git"
    await submissions.check_host_briefly_remembered(url, ())
    clock.now += submissions.HOST_CHECK_SECONDS - 0.1
    await submissions.check_host_briefly_remembered(url, ())
    await submissions.check_host_briefly_remembered(url, ("forge.example",))  # another allow-list
    assert resolved == [url, url]
    clock.now += 0.2
    await submissions.check_host_briefly_remembered(url, ())
    assert resolved == [url, url, url]
    submissions.forget_host_checks()


async def test_a_refused_host_is_checked_again_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def refuse(url: str, *, allowlist: tuple[str, ...] = ()) -> tuple[str, ...]:
        calls.append(url)
        raise RepositoryRefused("repository host 'inside' resolves to an internal address (10.0.0.1)")

    monkeypatch.setattr(submissions, "check_repository_host", refuse)
    submissions.forget_host_checks()
    for _ in range(2):
        with pytest.raises(RepositoryRefused):
            await submissions.check_host_briefly_remembered("https://inside/a.git", ())
    assert len(calls) == 2
