"""Fixtures shared by the whole suite: private servers, never the machine's shared ones."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from service_feature.bus.embedded import EmbeddedNatsServer
from tests.support.databases import POSTGRES_ADMIN_DSN, admin_sql
from tests.support.platform import origin  # noqa: F401 - a fixture


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNatsServer]:
    """A private nats-server 2.15 from the wheel, JetStream on, storage in the test's tmp dir."""
    server = EmbeddedNatsServer(tmp_path / "nats")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own on the machine's PostgreSQL, dropped afterwards."""
    name = f"sf_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(f"PostgreSQL is not usable at {POSTGRES_ADMIN_DSN}: {error}")
    yield POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    return tmp_path / "scripts"
