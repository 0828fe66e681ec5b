"""Engine, sessions and migrations, for SQLite (embedded) and PostgreSQL (distributed) alike."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from service_feature.metrics import FEATURE_TRANSITIONS


def restrict_sqlite_file(url: str) -> None:
    """Create the SQLite file owner-only (0600), like the admin key: it holds every request, transcript
    and key hash. SQLite gives its -wal and -shm files the database file's mode; an existing file is
    narrowed too (an older release created it 0644)."""
    name = make_url(url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    if not path.parent.is_dir():
        return  # SQLite's own error says so, as before
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    status = path.stat()
    if status.st_mode & 0o077 and status.st_uid == os.getuid():  # another user's file is not ours to change
        path.chmod(0o600)


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        restrict_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers (the API) run while a service writes; busy_timeout waits instead of failing.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("service_feature.store") / "migrations"))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply Alembic migrations on the engine's database (`service-feature db upgrade`)."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            async with session.begin():
                yield session
            for status in session.info.pop("transitions", ()):
                FEATURE_TRANSITIONS.labels(status).inc()  # counted only once committed

    async def ready(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()
