"""Sending one planned delivery.

The delivery row is locked (`FOR UPDATE SKIP LOCKED`) while its message is sent, so two jobs
for one delivery — a rescheduled one and the original, say — can never both send it: the second
finds it locked or already sent. A crash mid-send releases the lock and the retry sends again
(at-least-once is all SMTP offers); the status is written in the same transaction as the send.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.callbacks.service import notify
from app.db import utcnow
from app.delivery.channels import DeliveryFailed
from app.delivery.messages import GuestMessage, render_email, render_sms
from app.delivery.models import Delivery, DeliveryStatus
from app.delivery.service import Planned, contacts, send_time
from app.guests.service import issue_link, page_url
from app.metrics import DELIVERIES
from app.reservations.doors import granted_door_names
from app.reservations.models import AccessMethod, CodeState, Reservation, ReservationStatus
from app.runtime import Runtime
from app.timeline import TimelineKind, record_event
from app.worker.queue import defer
from app.worker.retry import RETRY, RetryLater

log = structlog.get_logger(__name__)

FINISHED = (
    DeliveryStatus.SENT,
    DeliveryStatus.CANCELLED,
    DeliveryStatus.SUPERSEDED,
    DeliveryStatus.FAILED,
)


_RESCHEDULE_WAITING_JOB = text(
    "UPDATE procrastinate_jobs SET scheduled_at = :at WHERE id = :id AND status = 'todo' "
    "RETURNING id"
)
BEING_SENT_RETRY = 30.0  # seconds: longer than a send takes but for a channel's timeout
_DELETE_WAITING_JOB = text("DELETE FROM procrastinate_jobs WHERE id = :id AND status = 'todo'")


class TransientDeliveryError(RetryLater):
    """The channel failed in a way worth retrying (SMTP down, provider throttling)."""


async def send_planned(runtime: Runtime, planned: Planned) -> None:
    """Send a message its planner committed just now (`plan_deliveries(send_now=True)`). A
    failure worth retrying is left to the message's backstop job, brought forward to when a
    job's first retry would have come."""
    try:
        await send_delivery(
            runtime, delivery_id=planned.delivery_id, backstop_job_id=planned.backstop_job_id
        )
    except RetryLater as error:
        delay = error.retry_after if error.retry_after is not None else RETRY.delay(1)
        at = utcnow() + timedelta(seconds=delay)
        async with runtime.sessionmaker() as session:
            moved = await session.scalar(
                _RESCHEDULE_WAITING_JOB, {"id": planned.backstop_job_id, "at": at}
            )
            if moved is None:  # that job already ran (and found the message being sent here)
                from app.delivery.tasks import send_delivery as send_task

                await defer(
                    session, send_task, schedule_at=at, delivery_id=str(planned.delivery_id)
                )
            await session.commit()
        log.info("delivery.left_to_job", delivery_id=str(planned.delivery_id))


async def send_delivery(
    runtime: Runtime, *, delivery_id: uuid.UUID, backstop_job_id: int | None = None
) -> None:
    """`backstop_job_id`: the message's job, deleted once the message is sent here."""
    async with runtime.sessionmaker() as session:
        found = (
            await session.execute(
                select(Delivery, Reservation, AccessMethod)
                .join(Reservation, Reservation.id == Delivery.reservation_id)
                .outerjoin(AccessMethod, AccessMethod.access_method_id == Delivery.access_method_id)
                .where(Delivery.id == delivery_id)
                .with_for_update(of=Delivery, skip_locked=True)
            )
        ).first()
        if found is None:
            status = await session.scalar(select(Delivery.status).where(Delivery.id == delivery_id))
            if status is not None and status not in FINISHED:
                # Being sent by another job right now, which may yet fail: come back then.
                raise RetryLater("the message is being sent", retry_after=BEING_SENT_RETRY)
            return  # gone, or done
        if found[0].status in FINISHED:
            return  # done
        delivery, reservation, method = found
        skip = _reason_to_skip(delivery, reservation, method)
        if skip is not None:
            delivery.status = skip.value
            await session.commit()
            log.info("delivery.skipped", delivery_id=str(delivery_id), reason=skip)
            return
        assert method is not None and method.code_ciphertext is not None
        now = utcnow()
        due = send_time(reservation, lead=runtime.settings.guestkey_delivery_lead, now=now)
        if delivery.kind == "new_code" and (wait := (due - now).total_seconds()) > 1:
            # The stay moved later since this was planned: hold the message until it is due.
            raise RetryLater("not due yet", retry_after=wait)

        message = GuestMessage(
            guest_name=reservation.guest_name,
            locale=reservation.guest_locale,
            property_name=reservation.property_name,
            code=runtime.cipher.decrypt(method.code_ciphertext),
            doors=await granted_door_names(session, reservation_id=reservation.id),
            starts_at=reservation.starts_at,
            ends_at=reservation.ends_at,
            timezone=reservation.timezone,
            kind=delivery.kind,  # type: ignore[arg-type]
            property_address=reservation.property_address,
            support_contact=runtime.settings.guestkey_support_contact,
            page_url=await _page_url(runtime, session, reservation, now=now),
        )
        delivery.attempts += 1
        try:
            await _send(runtime, delivery, message)
        except DeliveryFailed as error:
            await _record_failure(session, delivery, error)
            await session.commit()
            if error.transient:
                raise TransientDeliveryError(str(error), retry_after=error.retry_after) from error
            return
        await _record_success(
            session,
            delivery,
            reservation,
            callbacks=runtime.settings.guestkey_callback_url is not None,
        )
        if backstop_job_id is not None:
            await session.execute(_DELETE_WAITING_JOB, {"id": backstop_job_id})
        await session.commit()
    log.info(
        "delivery.sent", delivery_id=str(delivery_id), channel=delivery.channel, kind=delivery.kind
    )


def _reason_to_skip(
    delivery: Delivery, reservation: Reservation, method: AccessMethod | None
) -> DeliveryStatus | None:
    if reservation.status == ReservationStatus.CANCELLED:
        return DeliveryStatus.CANCELLED
    if (delivery.channel, delivery.recipient) not in contacts(reservation):
        # the guest's contact changed; the new one has its own delivery
        return DeliveryStatus.SUPERSEDED
    if method is None or method.state != CodeState.CURRENT or method.code_ciphertext is None:
        return DeliveryStatus.SUPERSEDED  # a backup code or a new grant replaced the code
    if method.code_version != delivery.code_version:
        return DeliveryStatus.SUPERSEDED  # a newer code has a delivery of its own
    return None


async def _page_url(
    runtime: Runtime, session: AsyncSession, reservation: Reservation, *, now: datetime
) -> str | None:
    """A personal link to the guest's page for this message (DESIGN.md §9.10), when guestkey
    knows the address guests reach it at."""
    public_url = runtime.settings.public_url
    if public_url is None:
        return None
    token = await issue_link(session, reservation_id=reservation.id, now=now)
    return page_url(public_url, token)


async def _send(runtime: Runtime, delivery: Delivery, message: GuestMessage) -> None:
    if delivery.channel == "email":
        await runtime.email_sender.send(
            render_email(message, to=delivery.recipient, mail_from=runtime.settings.mail_from)
        )
    else:
        await runtime.sms_sender.send(to=delivery.recipient, body=render_sms(message))


async def _record_success(
    session: AsyncSession, delivery: Delivery, reservation: Reservation, *, callbacks: bool
) -> None:
    now = utcnow()
    delivery.status, delivery.sent_at, delivery.error = DeliveryStatus.SENT.value, now, None
    # Conditional: the reservation row is not locked while a message is being sent.
    first = await session.scalar(
        update(Reservation)
        .where(
            Reservation.id == reservation.id,
            Reservation.status == ReservationStatus.ISSUED.value,
        )
        .values(status=ReservationStatus.DELIVERED.value, updated_at=now)
        .returning(Reservation.id)
    )
    if first is not None:
        # What the update wrote, without reading the row back.
        set_committed_value(reservation, "status", ReservationStatus.DELIVERED.value)
        set_committed_value(reservation, "updated_at", now)
        await notify(
            session, reservation=reservation, event_type="reservation.delivered", enabled=callbacks
        )
    await record_event(
        session,
        reservation_id=reservation.id,
        kind=TimelineKind.DELIVERED,
        channel=delivery.channel,
        to=delivery.recipient,
        message=delivery.kind,
    )
    DELIVERIES.labels(delivery.channel, "sent").inc()


async def _record_failure(session: AsyncSession, delivery: Delivery, error: DeliveryFailed) -> None:
    delivery.status = (
        DeliveryStatus.RETRYING.value if error.transient else DeliveryStatus.FAILED.value
    )
    delivery.error = str(error)[:500]
    if not error.transient:
        await record_event(
            session,
            reservation_id=delivery.reservation_id,
            kind=TimelineKind.DELIVERY_FAILED,
            reason=delivery.error,
            channel=delivery.channel,
        )
    DELIVERIES.labels(delivery.channel, "retried" if error.transient else "failed").inc()
    log.warning(
        "delivery.failed",
        delivery_id=str(delivery.id),
        channel=delivery.channel,
        transient=error.transient,
    )
