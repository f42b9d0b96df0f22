"""Operators of the console, their sessions, their login attempts, and what they did."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, new_id


class Operator(Base):
    """A member of staff who signs in to the console. `client_id` NULL: sees every client;
    set: sees only that client's reservations. Operators are disabled, never deleted, so the
    audit log keeps naming them."""

    __tablename__ = "operator"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(Text, unique=True)
    client_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_client.id", ondelete="RESTRICT")
    )
    password_hash: Mapped[str] = mapped_column(Text)  # argon2id, with its own salt and cost
    # NULL while the operator still has the one-time password `operators create` printed:
    # the console then asks for a password of their own before anything else.
    password_chosen_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    disabled_at: Mapped[datetime | None]


class OperatorSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 digest is here,
    so a copy of the table opens no session. Ends when idle too long, at `expires_at` whatever
    happens, at logout, or when its operator is disabled."""

    __tablename__ = "operator_session"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    token_digest: Mapped[str] = mapped_column(Text, unique=True)
    operator_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operator.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class OperatorLoginAttempt(Base):
    """One try at the login form, kept to limit guessing per email and per client address."""

    __tablename__ = "operator_login_attempt"
    __table_args__ = (
        Index("ix_operator_login_attempt_email_attempted_at", "email", "attempted_at"),
        Index(
            "ix_operator_login_attempt_client_address_attempted_at",
            "client_address",
            "attempted_at",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(Text)
    client_address: Mapped[str] = mapped_column(Text)
    succeeded: Mapped[bool]
    attempted_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AuditEntry(Base):
    """Who did what, when, to which reservation: every operator action, refused ones too."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_entry_reservation_id_id", "reservation_id", "id"),
        Index("ix_audit_entry_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    operator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("operator.id", ondelete="RESTRICT"))
    action: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text, default="done")
    reservation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("reservation.id", ondelete="SET NULL")
    )
    client_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_client.id", ondelete="RESTRICT")
    )
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
