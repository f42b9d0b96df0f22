from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, LargeBinary, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampedMixin


class Installation(TimestampedMixin, Base):
    """Facts about this guestkey database, one row: the Seam workspace it belongs to, and the
    key of its address digests (random, kept encrypted under `GUESTKEY_ENCRYPTION_KEY`)."""

    __tablename__ = "installation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1, autoincrement=False)
    address_key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    seam_workspace_id: Mapped[str | None] = mapped_column(Text)
    seam_workspace_name: Mapped[str | None] = mapped_column(Text)
    seam_workspace_recorded_at: Mapped[datetime | None]
