from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampedMixin, new_id


class ReservationStatus(enum.StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    ISSUED = "issued"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


_STATUSES = ", ".join(f"'{status.value}'" for status in ReservationStatus)


class CodeState(enum.StrEnum):
    """An access method's place in the reservation: at most one current code per mode."""

    CURRENT = "current"
    SUPERSEDED = "superseded"  # a newer code (a backup code, a new grant) replaced it
    REVOKED = "revoked"  # Seam revoked or deleted it, or the stay was cancelled


class DoorState(enum.StrEnum):
    PENDING = "pending"  # asked for; the code is not on this door yet
    GRANTED = "granted"  # the code opens it
    UNSUPPORTED = "unsupported"  # the door cannot take a PIN code
    FAILED = "failed"  # Seam could not put the code on it
    LOST = "lost"  # it opened, and no longer does


def _values(states: type[enum.StrEnum]) -> str:
    return ", ".join(f"'{state.value}'" for state in states)


class Reservation(TimestampedMixin, Base):
    """A stay as the booking system described it, plus what guestkey made of it at Seam.

    `device_ids`/`acs_entrance_ids`/`space_ids`/`starts_at`/`ends_at` are what the booking
    system wants; `granted` is what the current Seam grant was created or updated with.
    The sync job converges the second onto the first.
    """

    __tablename__ = "reservation"
    __table_args__ = (
        UniqueConstraint("client_id", "reservation_key"),
        Index(
            "ix_reservation_ends_at_unpurged",
            "ends_at",
            postgresql_where=text("purged_at IS NULL"),
        ),
        Index(
            "ix_reservation_next_check_at",
            "next_check_at",
            postgresql_where=text("next_check_at IS NOT NULL"),
        ),
        CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        CheckConstraint("ends_at > starts_at", name="window"),
        Index("ix_reservation_client_id_created_at_id", "client_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_client.id", ondelete="RESTRICT"))
    reservation_key: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, default=ReservationStatus.PENDING.value)

    guest_name: Mapped[str] = mapped_column(Text)
    guest_email: Mapped[str | None] = mapped_column(Text)
    guest_phone: Mapped[str | None] = mapped_column(Text)
    guest_locale: Mapped[str] = mapped_column(Text, default="en")

    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    timezone: Mapped[str] = mapped_column(Text, default="UTC")
    property_name: Mapped[str | None] = mapped_column(Text)
    property_address: Mapped[str | None] = mapped_column(Text)
    device_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    acs_entrance_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    space_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)

    access_grant_key: Mapped[str] = mapped_column(Text, unique=True)
    grant_generation: Mapped[int] = mapped_column(default=1)
    access_grant_id: Mapped[str | None] = mapped_column(Text, unique=True)
    granted: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The grant a door change replaces: kept until its successor exists, then deleted.
    replacing_grant_id: Mapped[str | None] = mapped_column(Text)
    # The guest's Seam user identity, reused by every later grant of this guest.
    user_identity_id: Mapped[str | None] = mapped_column(Text)
    # What Seam warned about: [{"code", "message", "door_id"}] (DESIGN.md §9.2).
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    cancelled_at: Mapped[datetime | None]
    # When the reconciler should next look at this reservation (NULL: nothing to look for),
    # and how often it has looked since the last change: the wait doubles each time.
    next_check_at: Mapped[datetime | None]
    # Set when the guest's contact details and codes were erased (GUESTKEY_RETENTION).
    purged_at: Mapped[datetime | None]
    check_count: Mapped[int] = mapped_column(default=0, server_default="0")


class AccessMethod(TimestampedMixin, Base):
    """A Seam access method (a PIN code) of a reservation's grant. The code is encrypted."""

    __tablename__ = "access_method"
    __table_args__ = (CheckConstraint(f"state IN ({_values(CodeState)})", name="state"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="CASCADE"), index=True
    )
    access_method_id: Mapped[str] = mapped_column(Text, unique=True)
    access_grant_id: Mapped[str] = mapped_column(Text, index=True)
    mode: Mapped[str] = mapped_column(Text, default="code")
    is_issued: Mapped[bool] = mapped_column(default=False)
    issued_at: Mapped[datetime | None]
    is_backup_code: Mapped[bool] = mapped_column(default=False)
    code_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Bumped whenever Seam shows a different code: deliveries are once per code version.
    code_version: Mapped[int] = mapped_column(default=0, server_default="0")
    state: Mapped[str] = mapped_column(
        Text, default=CodeState.CURRENT.value, server_default=CodeState.CURRENT.value
    )
    # For a backup code: the access method whose code it replaced.
    original_access_method_id: Mapped[str | None] = mapped_column(Text)
    # When it stopped being current (superseded or revoked).
    removed_at: Mapped[datetime | None]


class ReservationDoor(Base):
    """A door of the reservation: asked for by the booking system or opened by its code,
    named as Seam names it (once Seam has named it), with its state."""

    __tablename__ = "reservation_door"
    __table_args__ = (
        UniqueConstraint("reservation_id", "door_type", "door_id"),
        CheckConstraint(f"state IN ({_values(DoorState)})", name="state"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="CASCADE")
    )
    door_type: Mapped[str] = mapped_column(Text)
    door_id: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(
        Text, default=DoorState.PENDING.value, server_default=DoorState.PENDING.value
    )
    reason: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(default=0)


class ReservationEvent(Base):
    """One line of a reservation's timeline: what happened, when, and why."""

    __tablename__ = "reservation_event"
    __table_args__ = (Index("ix_reservation_event_reservation_id_id", "reservation_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SeamIdentity(Base):
    """A guest's Seam user identity, by the key guestkey derives from their contact: the
    next grant of the same guest names the identity instead of having Seam refuse a second
    one."""

    __tablename__ = "seam_identity"

    user_identity_key: Mapped[str] = mapped_column(Text, primary_key=True)
    user_identity_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
