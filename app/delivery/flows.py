"""Sending one planned delivery: read what to say, send it outside any transaction, record."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import select, update

from app.db import utcnow
from app.delivery.channels import DeliveryFailed
from app.delivery.messages import GuestMessage, render_email, render_sms
from app.delivery.models import Delivery
from app.metrics import DELIVERIES
from app.reservations.models import (
    AccessMethod,
    Reservation,
    ReservationDoor,
    ReservationStatus,
)
from app.reservations.service import record_event
from app.runtime import Runtime
from app.worker.retry import RetryLater

log = structlog.get_logger(__name__)


class TransientDeliveryError(RetryLater):
    """The channel failed in a way worth retrying (SMTP down, provider throttling)."""


async def send_delivery(runtime: Runtime, *, delivery_id: uuid.UUID) -> None:
    logger = log.bind(delivery_id=str(delivery_id))
    async with runtime.sessionmaker() as session:
        delivery = await session.get(Delivery, delivery_id)
        if delivery is None or delivery.status in ("sent", "cancelled", "superseded", "failed"):
            return
        reservation = await session.get(Reservation, delivery.reservation_id)
        method = await session.scalar(
            select(AccessMethod).where(AccessMethod.access_method_id == delivery.access_method_id)
        )
        assert reservation is not None
        skip = None
        if reservation.status == ReservationStatus.CANCELLED:
            skip = "cancelled"
        elif method is None or method.removed_at is not None or method.code_ciphertext is None:
            skip = "superseded"
        elif method.code_version != delivery.code_version:
            skip = "superseded"  # a newer code has its own delivery
        if skip is not None:
            delivery.status = skip
            await session.commit()
            logger.info("delivery.skipped", reason=skip)
            return
        assert method is not None and method.code_ciphertext is not None
        doors = list(
            await session.scalars(
                select(ReservationDoor.name)
                .where(ReservationDoor.reservation_id == reservation.id)
                .order_by(ReservationDoor.position, ReservationDoor.name)
            )
        )
        message = GuestMessage(
            guest_name=reservation.guest_name,
            locale=reservation.guest_locale,
            property_name=reservation.property_name,
            code=runtime.cipher.decrypt(method.code_ciphertext),
            doors=doors,
            starts_at=reservation.starts_at,
            ends_at=reservation.ends_at,
            timezone=reservation.timezone,
            kind=delivery.kind,  # type: ignore[arg-type]
        )
        channel, recipient, reservation_id = delivery.channel, delivery.recipient, reservation.id
        delivery.status = "sending"
        delivery.attempts += 1
        await session.commit()

    try:
        if channel == "email":
            await runtime.email_sender.send(
                render_email(message, to=recipient, mail_from=runtime.settings.mail_from)
            )
        else:
            await runtime.sms_sender.send(to=recipient, body=render_sms(message))
    except DeliveryFailed as error:
        DELIVERIES.labels(channel, "retried" if error.transient else "failed").inc()
        await _record_failure(runtime, delivery_id, reservation_id, channel, error)
        if error.transient:
            raise TransientDeliveryError(str(error)) from error
        return

    DELIVERIES.labels(channel, "sent").inc()
    async with runtime.sessionmaker() as session:
        now = utcnow()
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status="sent", sent_at=now, error=None, updated_at=now)
        )
        await session.execute(
            update(Reservation)
            .where(
                Reservation.id == reservation_id,
                Reservation.status == ReservationStatus.ISSUED.value,
            )
            .values(status=ReservationStatus.DELIVERED.value, updated_at=now)
        )
        await record_event(
            session,
            reservation_id=reservation_id,
            kind="delivered",
            channel=channel,
            to=recipient,
            message=message.kind,
        )
        await session.commit()
    logger.info("delivery.sent", channel=channel, kind=message.kind)


async def _record_failure(
    runtime: Runtime,
    delivery_id: uuid.UUID,
    reservation_id: uuid.UUID,
    channel: str,
    error: DeliveryFailed,
) -> None:
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(
                status="retrying" if error.transient else "failed",
                error=str(error)[:500],
                updated_at=utcnow(),
            )
        )
        if not error.transient:
            await record_event(
                session,
                reservation_id=reservation_id,
                kind="delivery_failed",
                reason=str(error)[:500],
                channel=channel,
            )
        await session.commit()
    log.warning(
        "delivery.failed", delivery_id=str(delivery_id), channel=channel, transient=error.transient
    )
