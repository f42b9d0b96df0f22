"""API clients and their keys. Keys are random, shown once, and stored as SHA-256 digests."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Collection, Mapping

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.clients.models import ApiClient, ApiKey
from app.config import ConfigurationError, insecure_url_problem
from app.crypto import CodeCipher
from app.db import autocommit, utcnow
from app.errors import Conflict, InvalidInput, NotFound

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
    revoked = list(
        await session.scalars(
            select(ApiClient.name).where(
                ApiClient.id.in_(client_ids.values()), ApiClient.revoked_at.is_not(None)
            )
        )
    )
    if revoked:
        # The name's reservations belonged to a client that was revoked: a key in the
        # environment must not bring them back.
        raise ConfigurationError(
            f"GUESTKEY_API_KEYS names revoked client(s) {', '.join(sorted(revoked))}: "
            "give the key another client name"
        )
    return {key_digest(key): client_ids[name] for key, name in env_keys.items()}


async def authenticate(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    key: str,
    env_digests: Mapping[str, uuid.UUID],
) -> uuid.UUID | None:
    """The client whose key this is: one from GUESTKEY_API_KEYS without the database, else
    an unrevoked key of an unrevoked client, read in one statement of its own."""
    digest = key_digest(key)
    client_id = env_digests.get(digest)
    if client_id is not None:
        return client_id
    async with autocommit(sessionmaker) as session:
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


def generate_callback_secret() -> str:
    """A Standard Webhooks secret (`whsec_` + base64 of 24 random bytes), as Svix makes them."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _check_callback_url(url: str) -> None:
    problem = insecure_url_problem("the callback URL", url)
    if problem:
        raise InvalidInput(problem, location=("callback_url",))


async def create_client(
    session: AsyncSession,
    *,
    name: str,
    callback_url: str | None = None,
    cipher: CodeCipher | None = None,
) -> tuple[ApiClient, str, str | None]:
    """(client, API key, callback signing secret or None). A name is never reused: a revoked
    client's reservations stay its own."""
    existing = await session.scalar(select(ApiClient).where(ApiClient.name == name))
    if existing is not None and existing.revoked_at is not None:
        raise Conflict(f"client {name!r} was revoked; a revoked name is not reused")
    if existing is not None:
        raise Conflict(f"client {name!r} already exists")
    client = ApiClient(name=name)
    callback_secret = None
    if callback_url is not None:
        assert cipher is not None, "a callback secret is stored encrypted"
        _check_callback_url(callback_url)
        callback_secret = generate_callback_secret()
        client.callback_url = callback_url
        client.callback_secret_ciphertext = cipher.encrypt(callback_secret)
    session.add(client)
    await session.flush()
    key = generate_key()
    session.add(ApiKey(client_id=client.id, key_digest=key_digest(key), key_prefix=key[:12]))
    await session.flush()
    return client, key, callback_secret


async def set_callback(
    session: AsyncSession, *, name: str, callback_url: str, cipher: CodeCipher
) -> str | None:
    """Point the client's callbacks at `callback_url`; returns its signing secret when this made
    one (a client keeps its secret when only the URL changes)."""
    client = await _active_client(session, name=name)
    _check_callback_url(callback_url)
    client.callback_url = callback_url
    secret = None
    if client.callback_secret_ciphertext is None:
        secret = generate_callback_secret()
        client.callback_secret_ciphertext = cipher.encrypt(secret)
    await session.flush()
    return secret


async def _active_client(session: AsyncSession, *, name: str) -> ApiClient:
    client = await session.scalar(select(ApiClient).where(ApiClient.name == name))
    if client is None:
        raise NotFound(f"no client named {name!r}")
    if client.revoked_at is not None:
        raise Conflict(f"client {name!r} is revoked")
    return client


async def list_clients(session: AsyncSession) -> list[ApiClient]:
    return list(await session.scalars(select(ApiClient).order_by(ApiClient.name)))


async def revoke_client(
    session: AsyncSession, *, name: str, env_clients: Collection[str] = ()
) -> None:
    """Revoke a client made with `clients create`. A client of `GUESTKEY_API_KEYS` has no key
    in the database to revoke (a CLI client always has one): its key lives in the environment."""
    client = await session.scalar(select(ApiClient).where(ApiClient.name == name))
    if client is None:
        raise NotFound(f"no client named {name!r}")
    keys = await session.scalar(select(func.count()).where(ApiKey.client_id == client.id))
    if name in env_clients or not keys:
        raise Conflict(
            f"client {name!r} is defined in GUESTKEY_API_KEYS: remove its key there (and restart) "
            "to revoke it"
        )
    now = utcnow()
    client.revoked_at = now
    await session.execute(
        update(ApiKey)
        .where(ApiKey.client_id == client.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.flush()
