"""The guest's page (DESIGN.md §9.10): personal links, and what the page of a stay shows.

A link is `GUESTKEY_PUBLIC_URL/g/{token}`. Each message to the guest carries a link of its own,
made as the message goes out: 256 random bits (`secrets.token_urlsafe`), of which guestkey keeps
only the SHA-256 digest — a digest of a random token cannot be turned back into it, so a copy
of the database opens no page. A link opens its stay's page from when its message was sent
until a day after check-out; once the stay is cancelled it shows only that (no code, no doors).
Any other token — unknown, expired, malformed, of an erased stay — gets the same plain 404.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.crypto import CodeCipher
from app.guests.models import GuestLink, GuestPage
from app.reservations.models import (
    AccessMethod,
    CodeState,
    Reservation,
    ReservationDoor,
    ReservationStatus,
)
from app.timeline import TimelineKind, record_event

TOKEN_BYTES = 32  # 256 bits of randomness; the page asks for at least 128
LINK_GRACE = timedelta(days=1)  # a link keeps working this long after check-out
REPORT_INTERVAL = timedelta(minutes=5)  # one "my code doesn't work" per stay in this time
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")  # what token_urlsafe(32) makes


class LinkState(enum.StrEnum):
    OPEN = "open"
    CANCELLED = "cancelled"  # the page says the stay was cancelled, and nothing else


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def page_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/g/{token}"


async def issue_link(session: AsyncSession, *, reservation_id: uuid.UUID, now: datetime) -> str:
    """A new personal link for a message being sent now. Returns the token; keeps its digest."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        GuestLink(reservation_id=reservation_id, token_digest=token_digest(token), created_at=now)
    )
    await session.flush()
    return token


def link_state(reservation: Reservation, *, issued_at: datetime, now: datetime) -> LinkState | None:
    """What a link issued at `issued_at` opens at `now`: None is nothing (a 404)."""
    if reservation.purged_at is not None:
        return None  # the stay's details were erased (GUESTKEY_RETENTION)
    if now < issued_at or now > reservation.ends_at + LINK_GRACE:
        return None
    if reservation.status == ReservationStatus.CANCELLED:
        return LinkState.CANCELLED
    return LinkState.OPEN


async def open_link(
    session: AsyncSession, *, token: str, now: datetime
) -> tuple[Reservation, LinkState] | None:
    """The stay a token opens now, and how; None for every token that opens nothing."""
    if not _TOKEN_SHAPE.fullmatch(token):
        return None  # not one of ours: no database look-up for it
    found = (
        await session.execute(
            select(Reservation, GuestLink.created_at)
            .join(GuestLink, GuestLink.reservation_id == Reservation.id)
            .where(GuestLink.token_digest == token_digest(token))
        )
    ).first()
    if found is None:
        return None
    reservation, issued_at = found
    state = link_state(reservation, issued_at=issued_at, now=now)
    return None if state is None else (reservation, state)


async def page_state(
    session: AsyncSession, *, reservation_id: uuid.UUID, for_update: bool = False
) -> GuestPage:
    """The stay's page memory, made on first use."""
    await session.execute(
        insert(GuestPage)
        .values(reservation_id=reservation_id, fresh_codes=0)
        .on_conflict_do_nothing(index_elements=["reservation_id"])
    )
    query = select(GuestPage).where(GuestPage.reservation_id == reservation_id)
    if for_update:
        query = query.with_for_update()
    page = await session.scalar(query.execution_options(populate_existing=True))
    assert page is not None
    return page


async def current_code(session: AsyncSession, *, reservation_id: uuid.UUID) -> AccessMethod | None:
    """The guest's code now: the current, issued PIN code of the stay."""
    method: AccessMethod | None = await session.scalar(
        select(AccessMethod)
        .where(
            AccessMethod.reservation_id == reservation_id,
            AccessMethod.mode == "code",
            AccessMethod.state == CodeState.CURRENT.value,
            AccessMethod.is_issued.is_(True),
            AccessMethod.code_ciphertext.is_not(None),
        )
        .order_by(AccessMethod.issued_at.desc().nulls_last())
        .limit(1)
    )
    return method


async def stay_doors(session: AsyncSession, *, reservation_id: uuid.UUID) -> list[ReservationDoor]:
    """The doors the page lists, in the booking system's order; a space only while Seam names
    no door in it."""
    doors = list(
        await session.scalars(
            select(ReservationDoor)
            .where(ReservationDoor.reservation_id == reservation_id)
            .order_by(ReservationDoor.position, ReservationDoor.name)
        )
    )
    if any(door.door_type != "space" for door in doors):
        doors = [door for door in doors if door.door_type != "space"]
    return doors


@dataclass(frozen=True)
class Stay:
    """Everything the page shows about one stay, read in one go."""

    reservation: Reservation
    doors: list[ReservationDoor]
    has_code: bool
    # The code changed since the guest last revealed one.
    code_changed: bool
    # A fresh code was asked for and Seam has not issued it yet.
    awaiting_fresh_code: bool
    fresh_codes_left: int
    code: str | None = field(default=None, repr=False)  # only once the guest asked to see it


async def read_stay(
    session: AsyncSession, *, reservation: Reservation, fresh_code_limit: int
) -> Stay:
    method = await current_code(session, reservation_id=reservation.id)
    page = await page_state(session, reservation_id=reservation.id)
    awaiting = page.awaiting_access_method_id is not None and (
        await session.scalar(
            select(AccessMethod.id).where(
                AccessMethod.access_method_id == page.awaiting_access_method_id
            )
        )
        is None
    )
    seen = (page.seen_access_method_id, page.seen_code_version)
    return Stay(
        reservation=reservation,
        doors=await stay_doors(session, reservation_id=reservation.id),
        has_code=method is not None,
        code_changed=(
            method is not None
            and page.seen_access_method_id is not None
            and seen != (method.access_method_id, method.code_version)
        ),
        awaiting_fresh_code=awaiting,
        fresh_codes_left=max(0, fresh_code_limit - page.fresh_codes),
    )


async def reveal_code(
    session: AsyncSession, *, reservation_id: uuid.UUID, cipher: CodeCipher, reason: str
) -> str | None:
    """The current code, decrypted for the guest's eyes: remembered as the code the guest has
    seen, and recorded in the timeline (which code, never the code itself)."""
    method = await current_code(session, reservation_id=reservation_id)
    if method is None or method.code_ciphertext is None:
        return None
    page = await page_state(session, reservation_id=reservation_id, for_update=True)
    page.seen_access_method_id = method.access_method_id
    page.seen_code_version = method.code_version
    await record_event(
        session,
        reservation_id=reservation_id,
        kind=TimelineKind.CODE_REVEALED,
        reason=reason,
        access_method_id=method.access_method_id,
    )
    return cipher.decrypt(method.code_ciphertext)
