from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, new_id


class ApiClient(Base):
    """A booking system. Every reservation belongs to exactly one client."""

    __tablename__ = "api_client"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]
    # Where this client's callbacks go, signed with its own secret (encrypted at rest).
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)


class ApiKey(Base):
    """A key created with `guestkey clients create`; only its SHA-256 digest is stored."""

    __tablename__ = "api_key"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_client.id", ondelete="CASCADE"), index=True
    )
    key_digest: Mapped[str] = mapped_column(Text, unique=True)
    key_prefix: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


class SeamChangeBudget(Base):
    """Requests of one client that change Seam, counted per fixed window."""

    __tablename__ = "seam_change_budget"

    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_client.id", ondelete="CASCADE"), primary_key=True
    )
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    spent: Mapped[int] = mapped_column(Integer, default=0)
