"""A reservation's timeline: what happened to it, when, and why.

Every domain records here and none records anywhere else, so the reservations, delivery and
webhooks packages depend on this module and never on each other for it.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.reservations.models import ReservationEvent


class TimelineKind(enum.StrEnum):
    # the booking system
    REQUESTED = "requested"
    CHANGED = "changed"
    CANCELLED = "cancelled"
    RESEND_REQUESTED = "resend_requested"
    # the grant at Seam
    GRANT_CREATED = "grant_created"
    GRANT_REPLACED = "grant_replaced"
    GRANT_DELETED = "grant_deleted"
    GRANT_MISSING = "grant_missing"  # one guestkey made that Seam does not know: an error
    TIMES_CHANGED = "times_changed"
    TIMES_CHANGED_AT_SEAM = "times_changed_at_seam"
    FAILED = "failed"
    # doors
    DOOR_GRANTED = "door_granted"
    DOOR_LOST = "door_lost"
    DOOR_UNSUPPORTED = "door_unsupported"
    DOOR_FAILED = "door_failed"
    # codes
    ISSUED = "issued"
    CODE_CHANGED = "code_changed"
    CODE_SUPERSEDED = "code_superseded"
    ACCESS_METHOD_GONE = "access_method_gone"
    ACCESS_METHOD_REVOKED = "access_method_revoked"
    ACCESS_METHOD_DELETED = "access_method_deleted"
    ACCESS_METHOD_DELAY_IN_ISSUING = "access_method_delay_in_issuing"
    ACCESS_METHOD_FAILED_TO_ISSUE = "access_method_failed_to_issue"
    ACCESS_METHOD_NOT_OURS = "access_method_not_ours"
    # messages to the guest
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    # the guest's page (DESIGN.md §9.10)
    CODE_REVEALED = "code_revealed"
    GUEST_REPORTED_PROBLEM = "guest_reported_problem"
    FRESH_CODE_REQUESTED = "fresh_code_requested"


# One Core statement: no unit of work for a row nothing reads back.
_INSERT_EVENT = cast(Table, ReservationEvent.__table__).insert()


async def record_event(
    session: AsyncSession,
    *,
    reservation_id: uuid.UUID,
    kind: TimelineKind,
    reason: str | None = None,
    **detail: Any,
) -> None:
    if session.new or session.dirty or session.deleted:
        await session.flush()  # as before: the entry is written after what it records
    await session.execute(
        _INSERT_EVENT,
        {"reservation_id": reservation_id, "kind": kind.value, "reason": reason, "detail": detail},
    )


async def timeline(session: AsyncSession, *, reservation_id: uuid.UUID) -> list[ReservationEvent]:
    """Oldest first, by the time each entry was recorded."""
    rows = await session.scalars(
        select(ReservationEvent)
        .where(ReservationEvent.reservation_id == reservation_id)
        .order_by(ReservationEvent.created_at, ReservationEvent.id)
    )
    return list(rows)
