"""Planning guest messages: one delivery row per (what, channel, recipient), scheduled."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.delivery.models import Delivery, DeliveryStatus
from app.installation.service import address_digest
from app.reservations.models import AccessMethod, CodeState, Reservation
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


def _recipient_digest(session: AsyncSession, recipient: str) -> str:
    """Keyed (DESIGN.md §9.8): the key is the runtime's, handed to every session it makes."""
    return address_digest(session.info["address_key"], recipient)


async def _code_was_sent(session: AsyncSession, method: AccessMethod) -> bool:
    sent = await session.scalar(
        select(Delivery.id)
        .where(
            Delivery.access_method_id == method.access_method_id,
            Delivery.code_version == method.code_version,
            Delivery.status == DeliveryStatus.SENT.value,
        )
        .limit(1)
    )
    return sent is not None


async def reschedule_waiting(
    session: AsyncSession, *, reservation: Reservation, lead: timedelta
) -> None:
    """After the stay moved: scheduled code messages get a job at their new send time (a job
    that wakes early re-checks and waits; one that wakes after the message went is a no-op)."""
    from app.delivery.tasks import send_delivery

    now = utcnow()
    send_after = send_time(reservation, lead=lead, now=now)
    waiting = await session.scalars(
        select(Delivery).where(
            Delivery.reservation_id == reservation.id,
            Delivery.status == DeliveryStatus.SCHEDULED.value,
            Delivery.kind == "new_code",
        )
    )
    for delivery in waiting:
        if delivery.send_after != send_after:
            delivery.send_after = send_after
            await defer(
                session,
                send_delivery,
                schedule_at=send_after if send_after > now else None,
                delivery_id=str(delivery.id),
            )


# A message sent by the job that planned it still gets a job, due this much later: it sends
# the message if that job died before it could (and finds it sent, and is deleted, otherwise).
SEND_NOW_BACKSTOP = timedelta(seconds=30)


class Planned(NamedTuple):
    delivery_id: uuid.UUID
    # The job that sends the message if the planner does not: set for `send_now` messages.
    backstop_job_id: int | None = None


async def plan_for_issued_codes(
    session: AsyncSession,
    *,
    reservation: Reservation,
    kind: str,
    lead: timedelta,
    once_per: str | None = None,
) -> list[uuid.UUID]:
    """Plan `kind` messages for every code of the reservation that is issued now."""
    methods = await session.scalars(
        select(AccessMethod).where(
            AccessMethod.reservation_id == reservation.id,
            AccessMethod.state == CodeState.CURRENT.value,
            AccessMethod.is_issued.is_(True),
            AccessMethod.code_ciphertext.is_not(None),
        )
    )
    planned: list[uuid.UUID] = []
    for method in methods:
        planned += [
            delivery_id
            for delivery_id, _ in await plan_deliveries(
                session,
                reservation=reservation,
                method=method,
                kind=kind,
                lead=lead,
                once_per=once_per,
            )
        ]
    return planned


async def plan_deliveries(
    session: AsyncSession,
    *,
    reservation: Reservation,
    method: AccessMethod,
    kind: str,
    lead: timedelta,
    once_per: str | None = None,
    send_now: bool = False,
) -> list[Planned]:
    """Create the deliveries of `kind` for the method's current code and enqueue them.

    `once_per` names what makes the message distinct (default: the code version), so the
    same message to the same recipient on the same channel is only ever planned once.
    `send_now`: the caller sends the messages that are due now itself, once it has committed
    (`flows.send_delivery` with the returned backstop job): their jobs wait SEND_NOW_BACKSTOP.
    """
    from app.delivery.tasks import send_delivery

    now = utcnow()
    # Only the first message of a code waits for the lead time; the others answer an event.
    send_after = send_time(reservation, lead=lead, now=now) if kind == "new_code" else now
    if kind == "times_changed" and not await _code_was_sent(session, method):
        return []  # the code's own message, still to come, will show the new window
    distinct = once_per or f"v{method.code_version}"
    planned: list[Planned] = []
    here = send_now and send_after <= now
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
                    f"{_recipient_digest(session, recipient)}"
                ),
                status=DeliveryStatus.SCHEDULED.value,
                send_after=send_after,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(Delivery.id)
        )
        if delivery_id is None:
            continue
        # No reservation lock: a message scheduled days ahead must not hold up the
        # reservation's other work. The row's status keeps it to one send.
        later = now + SEND_NOW_BACKSTOP if here else send_after
        job_id = await defer(
            session,
            send_delivery,
            schedule_at=later if later > now else None,
            delivery_id=str(delivery_id),
        )
        planned.append(Planned(delivery_id, job_id if here else None))
    return planned
