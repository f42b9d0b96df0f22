"""API clients and their keys. Keys are random, shown once, and stored as SHA-256 digests."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.clients.models import ApiClient, ApiKey
from app.db import utcnow
from app.errors import Conflict, NotFound

KEY_PREFIX = "gk_live_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """Keys carry 256 bits of entropy, so a plain SHA-256 is a safe, fast digest; lookups by
    digest don't leak the key through timing."""
    return hashlib.sha256(key.encode()).hexdigest()


async def ensure_clients(session: AsyncSession, *, names: set[str]) -> dict[str, uuid.UUID]:
    """Make sure a client row exists for each name (clients from `GUESTKEY_API_KEYS`)."""
    if not names:
        return {}
    await session.execute(
        insert(ApiClient)
        .values([{"id": uuid.uuid4(), "name": name} for name in sorted(names)])
        .on_conflict_do_nothing(index_elements=[ApiClient.name])
    )
    rows = await session.execute(
        select(ApiClient.name, ApiClient.id).where(ApiClient.name.in_(names))
    )
    return {name: client_id for name, client_id in rows}


async def env_key_digests(
    session: AsyncSession, *, env_keys: Mapping[str, str]
) -> dict[str, uuid.UUID]:
    """{digest of key: client id} for the keys configured in the environment."""
    client_ids = await ensure_clients(session, names=set(env_keys.values()))
    return {key_digest(key): client_ids[name] for key, name in env_keys.items()}


async def authenticate(
    session: AsyncSession, *, key: str, env_digests: Mapping[str, uuid.UUID]
) -> uuid.UUID | None:
    digest = key_digest(key)
    client_id = env_digests.get(digest)
    if client_id is not None:
        return client_id
    found: uuid.UUID | None = await session.scalar(
        select(ApiKey.client_id)
        .join(ApiClient, ApiClient.id == ApiKey.client_id)
        .where(
            ApiKey.key_digest == digest,
            ApiKey.revoked_at.is_(None),
            ApiClient.revoked_at.is_(None),
        )
    )
    return found


async def create_client(session: AsyncSession, *, name: str) -> tuple[ApiClient, str]:
    existing = await session.scalar(select(ApiClient).where(ApiClient.name == name))
    if existing is not None and existing.revoked_at is None:
        raise Conflict(f"client {name!r} already exists")
    client = existing or ApiClient(name=name)
    client.revoked_at = None
    session.add(client)
    await session.flush()
    key = generate_key()
    session.add(ApiKey(client_id=client.id, key_digest=key_digest(key), key_prefix=key[:12]))
    await session.flush()
    return client, key


async def list_clients(session: AsyncSession) -> list[ApiClient]:
    return list(await session.scalars(select(ApiClient).order_by(ApiClient.name)))


async def revoke_client(session: AsyncSession, *, name: str) -> None:
    client = await session.scalar(select(ApiClient).where(ApiClient.name == name))
    if client is None:
        raise NotFound(f"no client named {name!r}")
    now = utcnow()
    client.revoked_at = now
    await session.execute(
        update(ApiKey)
        .where(ApiKey.client_id == client.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.flush()
