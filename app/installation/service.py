"""What this database knows about itself: its Seam workspace and its address-digest key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography.fernet import InvalidToken
from sqlalchemy import inspect, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.config import ConfigurationError, Settings
from app.crypto import CodeCipher
from app.db import utcnow
from app.installation.models import Installation
from app.seam.client import Workspace
from app.seam.fake.seed import FAKE_WORKSPACE_NAME, seeded_id

log = structlog.get_logger(__name__)

ERASED = "(erased)"  # what the retention purge leaves of a guest's name and addresses

# The fake Seam's one workspace has a fixed id: that is how a fake is told from Seam.
FAKE_WORKSPACE_ID = seeded_id("workspace", FAKE_WORKSPACE_NAME)


async def installation(session: AsyncSession, *, cipher: CodeCipher) -> Installation:
    """The row, made on first use with a new random address key."""
    key = secrets.token_hex(32)
    made = await session.scalar(
        insert(Installation)
        .values(id=1, address_key_ciphertext=cipher.encrypt(key))
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(Installation.id)
    )
    if made is not None:
        await _rekey_deliveries(session, key=key.encode())
    row = await session.scalar(select(Installation).where(Installation.id == 1))
    assert row is not None
    return row


async def _rekey_deliveries(session: AsyncSession, *, key: bytes) -> None:
    """Deliveries planned before digests were keyed: the same digest, keyed, so that a message
    planned again after the upgrade is still recognised as sent."""
    from app.delivery.models import Delivery  # the runtime imports this module; delivery too

    rows = await session.execute(
        select(Delivery.id, Delivery.recipient, Delivery.dedupe_key).where(
            Delivery.recipient != ERASED
        )
    )
    for delivery_id, recipient, dedupe_key in rows.all():
        prefix = dedupe_key.rpartition(":")[0]
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(dedupe_key=f"{prefix}:{address_digest(key, recipient)}")
        )


def address_key(row: Installation, *, cipher: CodeCipher) -> bytes:
    try:
        return cipher.decrypt(row.address_key_ciphertext).encode()
    except InvalidToken as error:
        raise ConfigurationError(
            "GUESTKEY_ENCRYPTION_KEY: none of its keys opens this database's data; put back the "
            "key it was encrypted with (after the new one) and run `guestkey reencrypt`"
        ) from error


def address_digest(key: bytes, address: str) -> str:
    """A keyed digest of an email address or phone number: equal addresses match, and nobody
    without the key can test guesses against it (a plain hash of a phone number reverses in
    seconds)."""
    normalised = address.strip().lower().encode()
    return hmac.new(key, normalised, hashlib.sha256).hexdigest()[:32]


async def check_workspace(
    session: AsyncSession, *, workspace: Workspace, settings: Settings
) -> None:
    """Refuse a Seam workspace other than the one this database was used with, and the fake
    Seam outside sandbox mode, unless the operator said so."""
    row = await session.scalar(select(Installation).where(Installation.id == 1).with_for_update())
    assert row is not None
    is_fake = workspace.workspace_id == FAKE_WORKSPACE_ID
    if is_fake and not settings.sandbox and not settings.allow_fake_seam:
        raise ConfigurationError(
            f"SEAM_ENDPOINT ({settings.seam_endpoint}) is guestkey's fake Seam, not Seam: point it "
            "at https://connect.getseam.com, or set GUESTKEY_ALLOW_FAKE_SEAM=true for a test"
        )
    recorded = row.seam_workspace_id
    if recorded is not None and recorded != workspace.workspace_id:
        if not settings.allow_workspace_change:
            raise ConfigurationError(
                f"SEAM_API_KEY belongs to Seam workspace {workspace.workspace_id} "
                f"({workspace.name!r}), but this database was used with workspace {recorded} "
                f"({row.seam_workspace_name!r}); its grants live there. Use that workspace's key, "
                "another database, or GUESTKEY_ALLOW_WORKSPACE_CHANGE=true to adopt the new one"
            )
        log.warning("seam.workspace_changed", previous=recorded, workspace=workspace.workspace_id)
    if recorded != workspace.workspace_id:
        row.seam_workspace_id = workspace.workspace_id
        row.seam_workspace_name = workspace.name
        row.seam_workspace_recorded_at = utcnow()
        log.info("seam.workspace_recorded", workspace=workspace.workspace_id, name=workspace.name)
    await session.flush()


@dataclass
class Reencrypted:
    rotated: int = 0
    # Tokens no configured key opens: their key was dropped too early.
    unreadable: int = 0
    # Still under an older key after the last pass (written meanwhile by a process that does
    # not know the new key yet): run again once every process has the new key.
    remaining: int = 0

    @property
    def complete(self) -> bool:
        return not self.unreadable and not self.remaining


# Every column guestkey encrypts under GUESTKEY_ENCRYPTION_KEY.
def _encrypted_columns() -> list[InstrumentedAttribute[Any]]:
    # Imported here: installation is imported by the runtime, which the domains import.
    from app.clients.models import ApiClient
    from app.reservations.models import AccessMethod

    return [
        AccessMethod.code_ciphertext,
        ApiClient.callback_secret_ciphertext,
        Installation.address_key_ciphertext,
    ]


MAX_REENCRYPT_PASSES = 5


async def reencrypt(session: AsyncSession, *, cipher: CodeCipher, batch: int = 500) -> Reencrypted:
    """Re-encrypt every stored secret under the first key, in batches that each commit.

    Rows are locked as they are read, waiting for any transaction that holds them (skipping a
    locked row would leave it under the old key). Passes repeat until one finds nothing left
    to rotate, so rows written under an old key during the run are caught too."""
    result = Reencrypted()
    for _ in range(MAX_REENCRYPT_PASSES):
        rotated, unreadable = 0, 0
        for column in _encrypted_columns():
            column_rotated, column_unreadable = await _reencrypt_column(
                session, column=column, cipher=cipher, batch=batch
            )
            rotated += column_rotated
            unreadable += column_unreadable
        result.rotated += rotated
        result.unreadable = unreadable
        result.remaining = rotated  # what this pass found; the next one should find none
        if not rotated:
            break
    return result


async def _reencrypt_column(
    session: AsyncSession, *, column: InstrumentedAttribute[Any], cipher: CodeCipher, batch: int
) -> tuple[int, int]:
    model = column.class_
    primary_key = inspect(model).primary_key[0]
    rotated, unreadable = 0, 0
    last: Any = None
    while True:
        query = (
            select(primary_key, column)
            .where(column.is_not(None))
            .order_by(primary_key)
            .limit(batch)
            .with_for_update()
        )
        if last is not None:
            query = query.where(primary_key > last)
        rows = (await session.execute(query)).all()
        if not rows:
            await session.commit()
            return rotated, unreadable
        for row_id, token in rows:
            if cipher.is_current(token):
                continue
            try:
                fresh = cipher.rotate(token)
            except InvalidToken:
                unreadable += 1
                log.error("crypto.unreadable", table=model.__tablename__, id=str(row_id))
                continue
            await session.execute(
                update(model).where(primary_key == row_id).values({column.key: fresh})
            )
            rotated += 1
        last = rows[-1][0]
        await session.commit()
