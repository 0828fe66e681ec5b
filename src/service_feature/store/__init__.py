"""Persistence: SQLAlchemy 2 (async) over SQLite or PostgreSQL, Alembic migrations, the outbox."""

from service_feature.store.database import Database, upgrade

__all__ = ["Database", "upgrade"]
