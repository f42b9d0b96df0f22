from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, new_id


class InboxOutcome(enum.StrEnum):
    RECEIVED = "received"  # stored; whose it is still to be found
    ROUTED = "routed"  # handed to its reservation's queue
    PROCESSED = "processed"
    IGNORED = "ignored"  # a type guestkey does not act on, or not a guestkey grant
    REJECTED = "rejected"  # verified, but not a Seam event


class SeamWebhook(Base):
    """The inbox: every verified delivery from Seam, once.

    `svix_id` and `event_id` are unique, so a redelivery or a replay is recognised however
    often it comes. Rows are kept at least 30 days (longer than Svix retries for).
    """

    __tablename__ = "seam_webhook"
    __table_args__ = (
        Index("ix_seam_webhook_received_at", "received_at"),
        Index(
            "ix_seam_webhook_routed",
            "reservation_id",
            "received_at",
            postgresql_where=text("outcome = 'routed'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    svix_id: Mapped[str] = mapped_column(Text, unique=True)
    event_id: Mapped[str | None] = mapped_column(Text, unique=True)
    event_type: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # A rejected body is not kept (it may hold anything, a code included): only its digest
    # and length, to match it with the sender's logs.
    body_sha256: Mapped[str | None] = mapped_column(Text)
    body_length: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(Text, default=InboxOutcome.RECEIVED.value)
    outcome_reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    processed_at: Mapped[datetime | None]
    # A routed event's reservation: its job applies every event routed to it, in order.
    reservation_id: Mapped[uuid.UUID | None]
