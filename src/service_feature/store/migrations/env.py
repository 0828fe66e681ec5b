"""Alembic environment. `service-feature db upgrade` passes a live connection; the bare `alembic` CLI
(with `-c` pointing at a config whose script_location is this folder) falls back to the settings' URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from service_feature.config import CommonSettings
from service_feature.store.database import create_engine
from service_feature.store.tables import Base

target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can ALTER only through batch mode
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_settings() -> None:
    engine = create_engine(CommonSettings().sqlalchemy_url)
    async with engine.begin() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    asyncio.run(run_from_settings())
