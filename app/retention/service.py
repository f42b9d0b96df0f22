"""Retention that reaches every copy of a guest's details (DESIGN.md §9.8).

The hourly purge erases a reservation's guest in the database; this module finds the copies
elsewhere: outbox files written for the guest, and the grant and the user identity guestkey
made at Seam (renamed and anonymised by a job, so that a Seam outage delays it, not drops it).
"""

from __future__ import annotations

import email.policy
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path

import structlog
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.reservations.models import Reservation
from app.seam.client import GuestIdentity
from app.worker.queue import Priority, defer

log = structlog.get_logger(__name__)

ERASED_GRANT_NAME = "guestkey reservation (guest erased)"
ERASED_GUEST_NAME = "Erased guest"


@dataclass(frozen=True)
class ErasedGuest:
    """What the purge read of one reservation before erasing it."""

    reservation_id: uuid.UUID
    email: str | None
    phone: str | None
    access_grant_id: str | None


async def guests_to_erase(
    session: AsyncSession, *, reservation_ids: Sequence[uuid.UUID]
) -> list[ErasedGuest]:
    rows = await session.execute(
        select(
            Reservation.id,
            Reservation.guest_email,
            Reservation.guest_phone,
            Reservation.access_grant_id,
        ).where(Reservation.id.in_(reservation_ids))
    )
    return [ErasedGuest(*row) for row in rows]


async def erase_at_seam_later(
    session: AsyncSession, *, guests: Sequence[ErasedGuest], purged: Collection[uuid.UUID]
) -> None:
    """Enqueue, in the purge's transaction, the renaming of each grant and the anonymising of
    each identity that no kept reservation still uses (a returning guest keeps theirs)."""
    from app.retention.tasks import erase_at_seam

    emails = {guest.email.lower() for guest in guests if guest.email}
    phones = {guest.phone for guest in guests if guest.phone}
    kept = await session.execute(
        select(Reservation.guest_email, Reservation.guest_phone).where(
            Reservation.purged_at.is_(None),
            Reservation.id.not_in(purged),
            or_(Reservation.guest_email.in_(emails), Reservation.guest_phone.in_(phones)),
        )
    )
    in_use = {_identity_key(email, phone) for email, phone in kept}
    anonymised: set[str] = set()
    for guest in guests:
        key = _identity_key(guest.email, guest.phone)
        anonymise = key not in in_use and key not in anonymised
        anonymised.add(key)
        if guest.access_grant_id is None and not anonymise:
            continue
        await defer(
            session,
            erase_at_seam,
            priority=Priority.NEW_STAY,
            access_grant_id=guest.access_grant_id,
            user_identity_key=key if anonymise else None,
        )


def _identity_key(email: str | None, phone: str | None) -> str:
    return GuestIdentity(full_name="", email_address=email, phone_number=phone).user_identity_key


def erase_outbox_files(directory: Path, *, recipients: Collection[str]) -> int:
    """Delete the outbox messages (`.eml`, `.txt`) addressed to any of `recipients`."""
    wanted = {recipient.strip().lower() for recipient in recipients if recipient}
    if not wanted or not directory.is_dir():
        return 0
    erased = 0
    for path in directory.iterdir():
        if path.suffix not in (".eml", ".txt") or not path.is_file():
            continue
        if _addressee(path) in wanted:
            path.unlink(missing_ok=True)
            erased += 1
    return erased


def _addressee(path: Path) -> str | None:
    try:
        with path.open("rb") as file:
            if path.suffix == ".eml":
                headers = BytesParser(policy=email.policy.default).parse(file, headersonly=True)
                to = headers["To"]
            else:
                first = file.readline().decode("utf-8", "replace")
                to = first.removeprefix("To:") if first.startswith("To:") else None
    except OSError:
        return None
    return str(to).strip().lower() if to else None
