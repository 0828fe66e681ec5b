"""Reads and writes of API keys, inside the caller's transaction. Keys arrive here already hashed: the
secret itself is never stored (see service_feature.auth)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service_feature.store.tables import ApiKey, utcnow


async def add_key(session: AsyncSession, *, name: str, role: str, prefix: str, key_hash: str) -> ApiKey:
    key = ApiKey(id=uuid.uuid4().hex[:16], name=name, role=role, prefix=prefix, key_hash=key_hash)
    session.add(key)
    await session.flush()
    return key


async def active_key_by_hash(session: AsyncSession, key_hash: str) -> ApiKey | None:
    query = select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    return (await session.execute(query)).scalar_one_or_none()


async def key_by_hash(session: AsyncSession, key_hash: str) -> ApiKey | None:
    """Revoked or not: registering a known key again must not duplicate it."""
    return (await session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash))).scalar_one_or_none()


async def list_keys(session: AsyncSession) -> Sequence[ApiKey]:
    return list((await session.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars())


async def revoke_key(session: AsyncSession, key_id: str) -> bool:
    """Revoke a key; False when there is no such key or it was revoked already."""
    key = await session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    return True
