#!/usr/bin/env python3
"""Create (or with --reset, drop and re-create) the PostgreSQL database that a DATABASE_URL names.

    ensure_database.py postgres://postgres@127.0.0.1:5432/service_feature          # create if missing
    ensure_database.py --reset postgres://postgres@127.0.0.1:5432/service_feature  # drop, create

Connects to the server's `postgres` maintenance database with the URL's credentials (asyncpg, a project
dependency). Used by `make up-local` and `make db-reset-local`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def _split(url: str) -> tuple[str, str]:
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://"))
    if parts.scheme not in ("postgres", "postgresql"):
        raise SystemExit(f"not a PostgreSQL URL: {parts.scheme}://…")
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit("the URL names no database")
    return urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, "")), name


async def main(url: str, reset: bool) -> None:
    admin, name = _split(url)
    quoted = '"' + name.replace('"', '""') + '"'
    connection = await asyncpg.connect(admin, timeout=10)
    try:
        if reset:
            await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
            print(f"dropped database {name}")
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f"CREATE DATABASE {quoted}")
            print(f"created database {name}")
    finally:
        await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reset", action="store_true", help="drop the database first")
    parser.add_argument("url")
    arguments = parser.parse_args()
    try:
        asyncio.run(main(arguments.url, arguments.reset))
    except (OSError, asyncpg.PostgresError) as error:
        sys.exit(f"PostgreSQL is not usable: {error}")
