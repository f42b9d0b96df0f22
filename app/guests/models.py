"""The guest's page (DESIGN.md §9.10): the links guests hold, and what the page remembers."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, new_id


class GuestLink(Base):
    """One personal link, as sent in one message. Only the token's SHA-256 digest is kept:
    the token itself exists in the guest's message and nowhere else."""

    __tablename__ = "guest_link"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="CASCADE"), index=True
    )
    token_digest: Mapped[str] = mapped_column(Text, unique=True)
    # When the message that carries it was sent: the link is valid from then on.
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class GuestPage(Base):
    """What the page of one stay remembers between the guest's visits."""

    __tablename__ = "guest_page"

    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="CASCADE"), primary_key=True
    )
    # The code the guest last revealed, so the page can say when it has changed since.
    seen_access_method_id: Mapped[str | None] = mapped_column(Text)
    seen_code_version: Mapped[int | None]
    # Fresh codes the guest asked for (GUESTKEY_FRESH_CODE_LIMIT per stay), and the last report
    # (one per REPORT_INTERVAL).
    fresh_codes: Mapped[int] = mapped_column(default=0, server_default="0")
    last_report_at: Mapped[datetime | None]
    # The access method of a fresh code Seam has not issued yet.
    awaiting_access_method_id: Mapped[str | None] = mapped_column(Text)
