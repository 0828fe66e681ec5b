"""Throwaway databases on the machine's PostgreSQL, for tests and benchmarks."""

from __future__ import annotations

import os

import asyncpg

POSTGRES_ADMIN_DSN = os.environ.get("SF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


async def admin_sql(statement: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) as the administrator."""
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
