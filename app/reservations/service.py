"""Reservations: create/update by PUT, read, list, cancel, and the timeline.

Functions take `(session, *, …)`, flush, and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.callbacks.service import notify
from app.config import Rate
from app.db import utcnow
from app.delivery.models import Delivery
from app.errors import (
    InvalidInput,
    NoIssuedCode,
    NotFound,
    ResendLimitReached,
    ReservationCancelled,
)
from app.metrics import RATE_LIMITED
from app.reservations.models import (
    AccessMethod,
    Reservation,
    ReservationDoor,
    ReservationEvent,
    ReservationStatus,
)
from app.reservations.schemas import ReservationIn
from app.timeline import TimelineKind, record_event
from app.worker.queue import Priority, defer

GRANT_FIELDS = ("starts_at", "ends_at", "device_ids", "acs_entrance_ids", "space_ids")
GUEST_CONTACT_FIELDS = ("guest_email", "guest_phone")


def grant_key(reservation_id: uuid.UUID, generation: int) -> str:
    """The Seam `access_grant_key`: stable for a reservation's grant, so a retried create finds
    the grant a lost response made instead of making a second one."""
    suffix = "" if generation == 1 else f"-g{generation}"
    return f"guestkey-{reservation_id}{suffix}"


def reservation_lock(reservation_id: uuid.UUID) -> str:
    """Jobs sharing this lock never run at the same time: work on one reservation is serial."""
    return f"reservation:{reservation_id}"


async def enqueue_sync(
    session: AsyncSession, *, reservation_id: uuid.UUID, new: bool = False
) -> None:
    """`new`: the first sync of a reservation this transaction created; it waits behind work
    on existing stays."""
    from app.reservations.tasks import sync_reservation

    await defer(
        session,
        sync_reservation,
        lock=reservation_lock(reservation_id),
        queueing_lock=f"reservation-sync:{reservation_id}",
        priority=Priority.NEW_STAY if new else None,
        lock_is_new=new,
        reservation_id=str(reservation_id),
    )


def _desired(data: ReservationIn) -> dict[str, Any]:
    return {
        "guest_name": data.guest.name,
        "guest_email": data.guest.email,
        "guest_phone": data.guest.phone,
        "guest_locale": data.guest.locale,
        "starts_at": data.starts_at,
        "ends_at": data.ends_at,
        "timezone": data.timezone,
        "property_name": data.property_name,
        "property_address": data.property_address,
        "device_ids": data.device_ids,
        "acs_entrance_ids": data.acs_entrance_ids,
        "space_ids": data.space_ids,
    }


async def _find(
    session: AsyncSession, *, client_id: uuid.UUID, reservation_key: str, for_update: bool = False
) -> Reservation | None:
    query = select(Reservation).where(
        Reservation.client_id == client_id, Reservation.reservation_key == reservation_key
    )
    if for_update:
        query = query.with_for_update()
    found: Reservation | None = await session.scalar(query)
    return found


async def get_reservation(
    session: AsyncSession, *, client_id: uuid.UUID, reservation_key: str, for_update: bool = False
) -> Reservation:
    reservation = await _find(
        session, client_id=client_id, reservation_key=reservation_key, for_update=for_update
    )
    if reservation is None:
        raise NotFound(f"no reservation {reservation_key!r}")
    return reservation


async def put_reservation(
    session: AsyncSession,
    *,
    client_id: uuid.UUID,
    reservation_key: str,
    data: ReservationIn,
    delivery_lead: timedelta = timedelta(0),
    reconcile_after: timedelta = timedelta(minutes=5),
    before_seam_change: Callable[[], Awaitable[None]] | None = None,
) -> tuple[Reservation, bool]:
    """Create or update; returns (reservation, created). An identical PUT changes nothing.
    `before_seam_change` is awaited before a change of an existing reservation's doors or
    times (the client's budget of such changes); it may raise."""
    desired = _desired(data)
    reservation = await _find(
        session, client_id=client_id, reservation_key=reservation_key, for_update=True
    )
    if reservation is None:
        reservation_id = uuid.uuid4()
        inserted = await session.scalar(
            insert(Reservation)
            .values(
                id=reservation_id,
                client_id=client_id,
                reservation_key=reservation_key,
                status=ReservationStatus.PENDING.value,
                access_grant_key=grant_key(reservation_id, 1),
                next_check_at=utcnow() + reconcile_after,
                **desired,
            )
            .on_conflict_do_nothing(index_elements=["client_id", "reservation_key"])
            .returning(Reservation.id)
        )
        if inserted is not None:
            await record_event(session, reservation_id=reservation_id, kind=TimelineKind.REQUESTED)
            await enqueue_sync(session, reservation_id=reservation_id, new=True)
            created = await session.get(Reservation, reservation_id)
            assert created is not None
            return created, True
        # A concurrent PUT of the same key won the insert: update its row instead.
        reservation = await _find(
            session, client_id=client_id, reservation_key=reservation_key, for_update=True
        )
        assert reservation is not None

    if reservation.status == ReservationStatus.CANCELLED:
        raise ReservationCancelled(f"reservation {reservation_key!r} is cancelled")
    changed = [name for name, value in desired.items() if getattr(reservation, name) != value]
    if not changed:
        return reservation, False
    if before_seam_change is not None and set(changed) & set(GRANT_FIELDS):
        await before_seam_change()

    for name in changed:
        setattr(reservation, name, desired[name])
    reservation.updated_at = utcnow()
    await record_event(
        session, reservation_id=reservation.id, kind=TimelineKind.CHANGED, fields=changed
    )
    retry = reservation.status == ReservationStatus.FAILED
    if retry:
        # The booking system corrected the reservation: try again from the start.
        reservation.status = ReservationStatus.PENDING.value
        reservation.last_error = None
    await session.flush()
    if retry or set(changed) & set(GRANT_FIELDS) or reservation.access_grant_id is None:
        await enqueue_sync(session, reservation_id=reservation.id)
        reservation.next_check_at = utcnow() + reconcile_after
        reservation.check_count = 0
    if set(changed) & set(GUEST_CONTACT_FIELDS):
        from app.delivery.service import plan_for_issued_codes

        # A new address or number gets the current code (each recipient once per code).
        await plan_for_issued_codes(
            session, reservation=reservation, kind="new_code", lead=delivery_lead
        )
    return reservation, False


async def resend(
    session: AsyncSession,
    *,
    client_id: uuid.UUID,
    reservation_key: str,
    limit: Rate | None = None,
) -> Reservation:
    """Send the current code again, on every channel, now — at most `limit` times per window
    (a booking system must not be able to flood a guest, or run up SMS costs)."""
    from app.delivery.service import plan_for_issued_codes

    reservation = await get_reservation(
        session, client_id=client_id, reservation_key=reservation_key, for_update=True
    )
    if reservation.status == ReservationStatus.CANCELLED:
        raise ReservationCancelled(f"reservation {reservation_key!r} is cancelled")
    if limit is not None:
        await _check_resend_limit(session, reservation=reservation, limit=limit)
    planned = await plan_for_issued_codes(
        session,
        reservation=reservation,
        kind="resend",
        lead=timedelta(0),
        once_per=uuid.uuid4().hex,
    )
    if not planned:
        raise NoIssuedCode(_no_code_message(reservation))
    await record_event(session, reservation_id=reservation.id, kind=TimelineKind.RESEND_REQUESTED)
    return reservation


def _no_code_message(reservation: Reservation) -> str:
    """Worded for the state: a failed reservation will get no code unless it is corrected."""
    key = reservation.reservation_key
    if reservation.status == ReservationStatus.FAILED:
        return f"reservation {key!r} failed and has no code to send: {reservation.last_error}"
    return f"reservation {key!r} has no issued code to send yet"


async def _check_resend_limit(
    session: AsyncSession, *, reservation: Reservation, limit: Rate
) -> None:
    """The timeline already holds every resend: count those within the window (the row lock
    taken by the caller makes concurrent resends count one after the other)."""
    now = utcnow()
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(ReservationEvent.created_at)).where(
                ReservationEvent.reservation_id == reservation.id,
                ReservationEvent.kind == TimelineKind.RESEND_REQUESTED.value,
                ReservationEvent.created_at > now - limit.window,
            )
        )
    ).one()
    if count < limit.count:
        return
    RATE_LIMITED.labels("resend").inc()
    retry_after = (oldest + limit.window - now).total_seconds() if oldest else 1
    raise ResendLimitReached(
        f"the code of {reservation.reservation_key!r} was resent {count} times within "
        f"{limit.window} (GUESTKEY_RESEND_LIMIT); retry later",
        retry_after_seconds=retry_after,
    )


async def cancel_reservation(
    session: AsyncSession, *, client_id: uuid.UUID, reservation_key: str, callbacks: bool = False
) -> Reservation:
    reservation = await get_reservation(
        session, client_id=client_id, reservation_key=reservation_key, for_update=True
    )
    if reservation.status == ReservationStatus.CANCELLED:
        return reservation
    reservation.status = ReservationStatus.CANCELLED.value
    now = utcnow()
    reservation.cancelled_at = reservation.updated_at = now
    reservation.next_check_at = now + timedelta(minutes=5)  # watched until the grant is gone
    reservation.check_count = 0
    await record_event(session, reservation_id=reservation.id, kind=TimelineKind.CANCELLED)
    await enqueue_sync(session, reservation_id=reservation.id)
    await notify(
        session, reservation=reservation, event_type="reservation.cancelled", enabled=callbacks
    )
    return reservation


def encode_cursor(reservation: Reservation) -> str:
    raw = json.dumps([reservation.created_at.isoformat(), str(reservation.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, reservation_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created_at), uuid.UUID(reservation_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as error:
        raise InvalidInput(
            "cursor is not one this API returned", location=("query", "cursor")
        ) from error


async def list_reservations(
    session: AsyncSession,
    *,
    client_id: uuid.UUID,
    status: ReservationStatus | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Reservation], str | None]:
    """Newest first, by (created_at, id) — stable under inserts, whatever the page size."""
    query = select(Reservation).where(Reservation.client_id == client_id)
    if status is not None:
        query = query.where(Reservation.status == status.value)
    if cursor:
        created_at, reservation_id = decode_cursor(cursor)
        # A row comparison, not an OR: PostgreSQL seeks to the cursor in the
        # (client_id, created_at, id) index instead of filtering every newer row.
        query = query.where(
            tuple_(Reservation.created_at, Reservation.id) < tuple_(created_at, reservation_id)
        )
    query = query.order_by(Reservation.created_at.desc(), Reservation.id.desc()).limit(limit + 1)
    rows = list(await session.scalars(query))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


@dataclass
class Related:
    """What a page of reservations shows besides their own columns, one query per kind."""

    access_methods: dict[uuid.UUID, list[AccessMethod]] = field(default_factory=dict)
    doors: dict[uuid.UUID, list[ReservationDoor]] = field(default_factory=dict)
    deliveries: dict[uuid.UUID, list[Delivery]] = field(default_factory=dict)


async def related(session: AsyncSession, *, reservation_ids: list[uuid.UUID]) -> Related:
    found = Related()
    if not reservation_ids:
        return found
    methods = await session.scalars(
        select(AccessMethod)
        .where(AccessMethod.reservation_id.in_(reservation_ids))
        .order_by(AccessMethod.created_at, AccessMethod.id)
    )
    for method in methods:
        found.access_methods.setdefault(method.reservation_id, []).append(method)
    doors = await session.scalars(
        select(ReservationDoor)
        .where(ReservationDoor.reservation_id.in_(reservation_ids))
        .order_by(ReservationDoor.position, ReservationDoor.name)
    )
    for door in doors:
        found.doors.setdefault(door.reservation_id, []).append(door)
    deliveries = await session.scalars(
        select(Delivery)
        .where(Delivery.reservation_id.in_(reservation_ids))
        .order_by(Delivery.created_at, Delivery.channel)
    )
    for delivery in deliveries:
        found.deliveries.setdefault(delivery.reservation_id, []).append(delivery)
    return found
