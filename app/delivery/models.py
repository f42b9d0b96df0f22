from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampedMixin, new_id


class DeliveryStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    RETRYING = "retrying"  # SMTP or provider trouble; retried like Seam outages
    SENT = "sent"
    FAILED = "failed"  # refused for good (a 550, say)
    SUPERSEDED = "superseded"  # a newer code, or a new contact, has its own message
    CANCELLED = "cancelled"


class Delivery(TimestampedMixin, Base):
    """One message to a guest on one channel.

    `dedupe_key` is unique: it names what the message is for (this access method's code
    version, on this channel, to this recipient — or one resend), so a redelivered webhook
    or a retried job can never send it twice.
    """

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_reservation_id_created_at", "reservation_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="CASCADE")
    )
    access_method_id: Mapped[str] = mapped_column(Text)
    code_version: Mapped[int] = mapped_column(default=0)
    channel: Mapped[str] = mapped_column(Text)
    recipient: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text, default="new_code")
    dedupe_key: Mapped[str] = mapped_column(Text, unique=True)
    status: Mapped[str] = mapped_column(Text, default=DeliveryStatus.SCHEDULED.value)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    send_after: Mapped[datetime]
    sent_at: Mapped[datetime | None]
