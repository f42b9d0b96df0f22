"""Planning guest messages: one delivery row per (what, channel, recipient), scheduled."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.delivery.models import Delivery
from app.reservations.models import AccessMethod, Reservation
from app.worker.queue import defer


def contacts(reservation: Reservation) -> list[tuple[str, str]]:
    """(channel, recipient) for every way the guest can be reached."""
    found: list[tuple[str, str]] = []
    if reservation.guest_email:
        found.append(("email", reservation.guest_email))
    if reservation.guest_phone:
        found.append(("sms", reservation.guest_phone))
    return found


def send_time(reservation: Reservation, *, lead: timedelta, now: datetime) -> datetime:
    """`starts_at - lead`, or now when that has passed (a code issued late goes out at once)."""
    return max(now, reservation.starts_at - lead) if lead else now


def _recipient_digest(recipient: str) -> str:
    return hashlib.sha256(recipient.strip().lower().encode()).hexdigest()[:16]


async def plan_deliveries(
    session: AsyncSession,
    *,
    reservation: Reservation,
    method: AccessMethod,
    kind: str,
    lead: timedelta,
    once_per: str | None = None,
) -> list[uuid.UUID]:
    """Create the deliveries of `kind` for the method's current code and enqueue them.

    `once_per` names what makes the message distinct (default: the code version), so the
    same message to the same recipient on the same channel is only ever planned once.
    """
    from app.delivery.tasks import send_delivery

    now = utcnow()
    send_after = send_time(reservation, lead=lead, now=now)
    distinct = once_per or f"v{method.code_version}"
    planned: list[uuid.UUID] = []
    for channel, recipient in contacts(reservation):
        delivery_id = await session.scalar(
            insert(Delivery)
            .values(
                id=uuid.uuid4(),
                reservation_id=reservation.id,
                access_method_id=method.access_method_id,
                code_version=method.code_version,
                channel=channel,
                recipient=recipient,
                kind=kind,
                dedupe_key=(
                    f"{kind}:{method.access_method_id}:{distinct}:{channel}:"
                    f"{_recipient_digest(recipient)}"
                ),
                status="scheduled",
                send_after=send_after,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(Delivery.id)
        )
        if delivery_id is None:
            continue
        # No reservation lock: a message scheduled days ahead must not hold up the
        # reservation's other work. The row's status keeps it to one send.
        await defer(
            session,
            send_delivery,
            schedule_at=send_after if send_after > now else None,
            delivery_id=str(delivery_id),
        )
        planned.append(delivery_id)
    return planned
