"""Making Seam match a reservation: create, move, re-create or delete its access grant.

`sync_reservation` is convergent: it reads what the booking system wants now and what the
current grant was made with, and does only the difference. Any number of changes that arrive
while it runs end in one more run (a queued job), never in lost work. Seam calls happen
outside database transactions; each result is written in a short transaction of its own.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.callbacks.service import notify
from app.db import utcnow
from app.reservations.models import (
    AccessMethod,
    Reservation,
    ReservationDoor,
    ReservationStatus,
)
from app.reservations.service import grant_key, record_event
from app.runtime import Runtime
from app.seam.client import Door, GuestIdentity, SeamGateway
from app.seam.errors import PermanentSeamError, SeamNotFound, TransientSeamError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Wanted:
    """A snapshot of one reservation, read in one transaction and used outside it."""

    id: uuid.UUID
    reservation_key: str
    status: str
    guest: GuestIdentity
    property_name: str | None
    starts_at: datetime
    ends_at: datetime
    device_ids: list[str]
    acs_entrance_ids: list[str]
    space_ids: list[str]
    access_grant_key: str
    access_grant_id: str | None
    grant_generation: int
    granted: dict[str, Any] | None

    @classmethod
    def of(cls, reservation: Reservation) -> Wanted:
        return cls(
            id=reservation.id,
            reservation_key=reservation.reservation_key,
            status=reservation.status,
            guest=GuestIdentity(
                full_name=reservation.guest_name,
                email_address=reservation.guest_email,
                phone_number=reservation.guest_phone,
            ),
            property_name=reservation.property_name,
            starts_at=reservation.starts_at,
            ends_at=reservation.ends_at,
            device_ids=list(reservation.device_ids),
            acs_entrance_ids=list(reservation.acs_entrance_ids),
            space_ids=list(reservation.space_ids),
            access_grant_key=reservation.access_grant_key,
            access_grant_id=reservation.access_grant_id,
            grant_generation=reservation.grant_generation,
            granted=reservation.granted,
        )

    @property
    def doors(self) -> dict[str, list[str]]:
        return {
            "device_ids": self.device_ids,
            "acs_entrance_ids": self.acs_entrance_ids,
            "space_ids": self.space_ids,
        }

    @property
    def window(self) -> dict[str, str]:
        # UTC whatever the database session's time zone, so equal instants compare equal.
        return {
            "starts_at": self.starts_at.astimezone(UTC).isoformat(),
            "ends_at": self.ends_at.astimezone(UTC).isoformat(),
        }

    @property
    def grant_name(self) -> str:
        place = f" at {self.property_name}" if self.property_name else ""
        return f"{self.guest.full_name}{place} ({self.reservation_key})"


# A sync takes one step at a time until Seam matches the reservation: usually one (create,
# move, replace or revoke), more when a create finds the grant of an earlier attempt whose
# answer was lost, and which holds the times and doors of before a change.
MAX_SYNC_STEPS = 4


async def sync_reservation(runtime: Runtime, *, reservation_id: uuid.UUID) -> None:
    for _ in range(MAX_SYNC_STEPS):
        async with runtime.sessionmaker() as session:
            reservation = await session.get(Reservation, reservation_id)
            if reservation is None:
                return
            wanted = Wanted.of(reservation)
        if not await _sync_step(runtime, wanted):
            return
    log.warning("reservations.sync.unsettled", reservation_id=str(reservation_id))


async def _sync_step(runtime: Runtime, wanted: Wanted) -> bool:
    """One step towards the reservation at Seam; False when there was nothing (more) to do."""
    logger = log.bind(reservation_id=str(wanted.id))
    try:
        if wanted.status == ReservationStatus.CANCELLED:
            await _revoke(runtime, wanted)
            return False
        if wanted.status == ReservationStatus.FAILED:
            return False
        if wanted.access_grant_id is None:
            await _create_grant(runtime, wanted)
        elif wanted.granted is None or _doors(wanted.granted) != wanted.doors:
            await _replace_grant(runtime, wanted)
        elif _window(wanted.granted) != wanted.window:
            await _move_grant(runtime, wanted)
        else:
            return False
        return True
    except PermanentSeamError as error:
        logger.warning("reservations.sync.failed", error_type=error.error_type, status=error.status)
        await _mark_failed(runtime, wanted, str(error))
    except TransientSeamError as error:
        logger.info(
            "reservations.sync.retrying",
            error_type=error.error_type,
            status=error.status,
            retry_after=error.retry_after,
        )
        await _note_error(runtime, wanted, f"Seam unavailable, retrying: {error}")
        raise
    return False


def _doors(granted: dict[str, Any]) -> dict[str, list[str]]:
    return {name: granted.get(name, []) for name in ("device_ids", "acs_entrance_ids", "space_ids")}


def _window(granted: dict[str, Any]) -> dict[str, str]:
    return {"starts_at": granted.get("starts_at", ""), "ends_at": granted.get("ends_at", "")}


async def _find_or_create(seam: SeamGateway, wanted: Wanted) -> tuple[Any, bool]:
    """Create first, look up only when Seam refuses: a grant key is unique in the workspace,
    and so is a guest's inline identity, so a refusal is what tells a retried create (whose
    first answer was lost) and a returning guest apart from a new stay of a new guest, which
    costs one call."""
    create = functools.partial(
        seam.create_grant,
        access_grant_key=wanted.access_grant_key,
        name=wanted.grant_name,
        guest=wanted.guest,
        starts_at=wanted.starts_at,
        ends_at=wanted.ends_at,
        device_ids=wanted.device_ids,
        acs_entrance_ids=wanted.acs_entrance_ids,
        space_ids=wanted.space_ids,
    )
    try:
        return await create(), True
    except PermanentSeamError:
        # The error type of a duplicate key is not documented: the key itself says.
        existing = await seam.find_grant(wanted.access_grant_key)
        if existing is not None:
            return existing, False
        identity_id = await seam.find_user_identity(wanted.guest)
        if identity_id is None:
            raise  # refused for another reason (unknown door, bad times): Seam's words stand
    return await create(user_identity_id=identity_id), True


async def _create_grant(runtime: Runtime, wanted: Wanted) -> None:
    grant, made = await _find_or_create(runtime.seam, wanted)
    missing = [
        error
        for error in grant.errors
        if error.get("error_code") == "cannot_create_requested_access_methods"
    ]
    # A grant found by key may predate a change (its create's answer was lost): record the
    # times and doors Seam holds, so the sync's next step moves or replaces it.
    held_window = {
        "starts_at": _utc_iso(grant.starts_at) or wanted.window["starts_at"],
        "ends_at": _utc_iso(grant.ends_at) or wanted.window["ends_at"],
    }
    held_doors = wanted.doors if made else await _held_doors(runtime.seam, grant, wanted)
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(Reservation)
            .where(Reservation.id == wanted.id)
            .values(
                access_grant_id=grant.access_grant_id,
                granted={**held_doors, **held_window},
                last_error=None,
                next_check_at=utcnow() + runtime.settings.guestkey_reconcile_after,
                check_count=0,
                status=case(
                    (
                        Reservation.status == ReservationStatus.PENDING.value,
                        ReservationStatus.GRANTED.value,
                    ),
                    else_=Reservation.status,
                ),
                updated_at=utcnow(),
            )
        )
        await _store_access_methods(
            session, wanted.id, grant.access_grant_id, grant.access_method_ids
        )
        await record_event(
            session,
            reservation_id=wanted.id,
            kind="grant_created",
            access_grant_id=grant.access_grant_id,
            access_method_count=len(grant.access_method_ids),
        )
        await session.commit()
    log.info(
        "reservations.grant.created",
        reservation_id=str(wanted.id),
        access_grant_id=grant.access_grant_id,
    )
    if missing:
        devices = sorted({d for error in missing for d in error.get("missing_device_ids") or []})
        message = "; ".join(str(error.get("message")) for error in missing)
        await _mark_failed(
            runtime,
            wanted,
            f"Seam could not create a PIN code for {devices or 'some doors'}: {message}",
        )


async def _held_doors(seam: SeamGateway, grant: Any, wanted: Wanted) -> dict[str, list[str]]:
    """The doors of a grant found by key, as far as Seam tells: the locks and entrances its
    codes open (`get_related`; a grant carries no door ids itself). When they are not the
    wanted ones, the doors it holds are returned, and the sync replaces the grant. Spaces are
    not compared: Seam names the doors in a space, not the space."""
    if not grant.access_method_ids:
        return wanted.doors  # nothing to ask about: take it as made
    opened = await seam.doors_of(grant.access_method_ids)
    held = {
        "device_ids": sorted(door.id for door in opened if door.type == "device"),
        "acs_entrance_ids": sorted(door.id for door in opened if door.type == "acs_entrance"),
    }
    asked = {name: sorted(wanted.doors[name]) for name in held}
    same = (
        all(set(asked[name]) <= set(held[name]) for name in held)
        if wanted.space_ids
        else asked == held
    )
    return wanted.doors if same else {**held, "space_ids": []}


async def _store_access_methods(
    session: AsyncSession, reservation_id: uuid.UUID, access_grant_id: str, ids: list[str]
) -> None:
    if not ids:
        return
    await session.execute(
        insert(AccessMethod)
        .values(
            [
                {
                    "id": uuid.uuid4(),
                    "reservation_id": reservation_id,
                    "access_method_id": access_method_id,
                    "access_grant_id": access_grant_id,
                    "mode": "code",
                }
                for access_method_id in ids
            ]
        )
        .on_conflict_do_nothing(index_elements=["access_method_id"])
    )


async def _replace_grant(runtime: Runtime, wanted: Wanted) -> None:
    """Seam cannot change a grant's doors: delete it, then create one under the next key."""
    assert wanted.access_grant_id is not None
    await runtime.seam.delete_grant(wanted.access_grant_id)
    generation = wanted.grant_generation + 1
    async with runtime.sessionmaker() as session:
        await _forget_grant(session, wanted, new_generation=generation)
        await record_event(
            session,
            reservation_id=wanted.id,
            kind="grant_replaced",
            reason="doors changed",
            old_access_grant_id=wanted.access_grant_id,
        )
        await session.commit()
    async with runtime.sessionmaker() as session:
        reservation = await session.get(Reservation, wanted.id)
        assert reservation is not None
        refreshed = Wanted.of(reservation)
    if refreshed.status != ReservationStatus.CANCELLED:
        await _create_grant(runtime, refreshed)


async def _forget_grant(
    session: AsyncSession, wanted: Wanted, *, new_generation: int | None = None
) -> None:
    now = utcnow()
    values: dict[str, Any] = {"access_grant_id": None, "granted": None, "updated_at": now}
    if new_generation is None:
        values["next_check_at"] = None  # cancelled and revoked: nothing left to watch
    if new_generation is not None:
        values["grant_generation"] = new_generation
        values["access_grant_key"] = grant_key(wanted.id, new_generation)
        values["status"] = case(
            (Reservation.status == ReservationStatus.CANCELLED.value, Reservation.status),
            else_=ReservationStatus.PENDING.value,
        )
    await session.execute(update(Reservation).where(Reservation.id == wanted.id).values(**values))
    await session.execute(
        update(AccessMethod)
        .where(AccessMethod.reservation_id == wanted.id, AccessMethod.removed_at.is_(None))
        .values(removed_at=now)
    )


async def _move_grant(runtime: Runtime, wanted: Wanted) -> None:
    assert wanted.access_grant_id is not None
    await runtime.seam.update_grant_times(
        wanted.access_grant_id, starts_at=wanted.starts_at, ends_at=wanted.ends_at
    )
    from app.delivery.service import plan_for_issued_codes, reschedule_waiting

    async with runtime.sessionmaker() as session:
        reservation = await session.get(Reservation, wanted.id, with_for_update=True)
        assert reservation is not None
        reservation.granted = {**wanted.doors, **wanted.window}
        reservation.last_error = None
        reservation.updated_at = utcnow()
        await record_event(session, reservation_id=wanted.id, kind="times_changed", **wanted.window)
        # The code stays; the guest is told the new window (once per window).
        await plan_for_issued_codes(
            session,
            reservation=reservation,
            kind="times_changed",
            lead=runtime.settings.guestkey_delivery_lead,
            once_per=f"{wanted.starts_at.isoformat()}/{wanted.ends_at.isoformat()}",
        )
        await reschedule_waiting(
            session, reservation=reservation, lead=runtime.settings.guestkey_delivery_lead
        )
        await session.commit()


async def _revoke(runtime: Runtime, wanted: Wanted) -> None:
    """Delete the grant — by id, or by key when a create's response never reached us."""
    grant_id = wanted.access_grant_id
    if grant_id is None:
        found = await runtime.seam.find_grant(wanted.access_grant_key)
        grant_id = found.access_grant_id if found else None
    if grant_id is None:
        return
    deleted = await runtime.seam.delete_grant(grant_id)
    async with runtime.sessionmaker() as session:
        await _forget_grant(session, wanted)
        await record_event(
            session,
            reservation_id=wanted.id,
            kind="grant_deleted",
            reason="reservation cancelled",
            access_grant_id=grant_id,
            already_gone=not deleted,
        )
        await session.commit()


async def _mark_failed(runtime: Runtime, wanted: Wanted, reason: str) -> None:
    async with runtime.sessionmaker() as session:
        result = await session.execute(
            update(Reservation)
            .where(
                Reservation.id == wanted.id,
                Reservation.status != ReservationStatus.CANCELLED.value,
            )
            .values(
                status=ReservationStatus.FAILED.value,
                last_error=reason,
                updated_at=utcnow(),
                next_check_at=None,
            )
        )
        if result.rowcount:  # type: ignore[attr-defined]
            await record_event(session, reservation_id=wanted.id, kind="failed", reason=reason)
            reservation = await session.get(Reservation, wanted.id)
            assert reservation is not None
            await notify(
                session,
                reservation=reservation,
                event_type="reservation.failed",
                enabled=runtime.settings.guestkey_callback_url is not None,
            )
        await session.commit()


async def _note_error(runtime: Runtime, wanted: Wanted, reason: str) -> None:
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(Reservation).where(Reservation.id == wanted.id).values(last_error=reason)
        )
        await session.commit()


async def refresh_access_method(
    runtime: Runtime,
    *,
    reservation_id: uuid.UUID,
    access_method_id: str,
    access_grant_id: str | None = None,
    backup_code: bool = False,
    seam_event: str | None = None,
) -> None:
    """Re-read an access method from Seam; when its code is issued (or new), store it
    encrypted with the doors it opens, and plan the guest's messages."""
    from app.delivery.service import plan_deliveries

    try:
        state = await runtime.seam.get_access_method(access_method_id)
    except SeamNotFound:
        async with runtime.sessionmaker() as session:
            await record_event(
                session,
                reservation_id=reservation_id,
                kind="access_method_gone",
                access_method_id=access_method_id,
            )
            await session.commit()
        return
    if not state.is_issued or not state.code:
        log.info("reservations.code.not_issued_yet", access_method_id=access_method_id)
        return
    doors = await runtime.seam.doors_of([access_method_id])

    async with runtime.sessionmaker() as session:
        reservation = await session.get(Reservation, reservation_id, with_for_update=True)
        assert reservation is not None
        if reservation.status == ReservationStatus.CANCELLED:
            return
        method = await session.scalar(
            select(AccessMethod).where(AccessMethod.access_method_id == access_method_id)
        )
        if method is None:  # issued before our create call returned
            method = AccessMethod(
                reservation_id=reservation_id,
                access_method_id=access_method_id,
                access_grant_id=access_grant_id or reservation.access_grant_id or "",
                mode=state.mode,
            )
            session.add(method)
        if method.removed_at is not None:
            return  # a replaced grant's method: its code is no longer the guest's
        previous = (
            runtime.cipher.decrypt(method.code_ciphertext) if method.code_ciphertext else None
        )
        new_code = previous != state.code
        method.is_issued = True
        method.issued_at = _parse_time(state.issued_at) or method.issued_at or utcnow()
        method.is_backup_code = backup_code or state.is_backup_code
        if new_code:
            method.code_ciphertext = runtime.cipher.encrypt(state.code)
            method.code_version += 1
        await _store_doors(session, reservation_id, doors)
        await session.flush()
        if new_code:
            if reservation.status != ReservationStatus.FAILED:
                reservation.status = ReservationStatus.ISSUED.value
            reservation.last_error = None
            reservation.next_check_at = None
            reservation.updated_at = utcnow()
            kind = "issued" if previous is None else "code_changed"
            await record_event(
                session,
                reservation_id=reservation_id,
                kind=kind,
                reason="backup code" if method.is_backup_code else seam_event,
                access_method_id=access_method_id,
                doors=[door.name for door in doors],
            )
            await plan_deliveries(
                session,
                reservation=reservation,
                method=method,
                kind="new_code",
                lead=runtime.settings.guestkey_delivery_lead,
            )
            await notify(
                session,
                reservation=reservation,
                event_type="reservation.issued" if previous is None else "reservation.code_changed",
                enabled=runtime.settings.guestkey_callback_url is not None,
            )
        await session.commit()
    if new_code:
        log.info(
            "reservations.code.stored", reservation_id=str(reservation_id), new=previous is None
        )


async def _store_doors(session: AsyncSession, reservation_id: uuid.UUID, doors: list[Door]) -> None:
    for position, door in enumerate(doors):
        await session.execute(
            insert(ReservationDoor)
            .values(
                id=uuid.uuid4(),
                reservation_id=reservation_id,
                door_type=door.type,
                door_id=door.id,
                name=door.name,
                position=position,
            )
            .on_conflict_do_update(
                index_elements=["reservation_id", "door_type", "door_id"],
                set_={"name": door.name, "position": position},
            )
        )
    keep = {(door.type, door.id) for door in doors}
    existing = await session.execute(
        select(ReservationDoor.id, ReservationDoor.door_type, ReservationDoor.door_id).where(
            ReservationDoor.reservation_id == reservation_id
        )
    )
    stale = [row.id for row in existing if (row.door_type, row.door_id) not in keep]
    if stale:
        await session.execute(delete(ReservationDoor).where(ReservationDoor.id.in_(stale)))


def _utc_iso(value: str | None) -> str | None:
    parsed = _parse_time(value)
    return parsed.astimezone(UTC).isoformat() if parsed else None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
