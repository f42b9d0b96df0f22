"""Making Seam match a reservation: create, move, re-create or delete its access grant.

`sync_reservation` is convergent: it reads what the booking system wants now and what the
current grant was made with, and does only the difference. Any number of changes that arrive
while it runs end in one more run (a queued job), never in lost work. Seam calls happen
outside database transactions; each result is written in a short transaction of its own.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.callbacks.service import notify
from app.db import autocommit, utcnow
from app.delivery.service import plan_for_issued_codes, reschedule_waiting
from app.metrics import GRANTS_MISSING
from app.reservations import codes, doors
from app.reservations.models import (
    AccessMethod,
    CodeState,
    Reservation,
    ReservationEvent,
    ReservationStatus,
    SeamIdentity,
)
from app.reservations.service import grant_key
from app.runtime import Runtime
from app.seam.client import Grant, GuestIdentity, SeamGateway
from app.seam.errors import PermanentSeamError, SeamRejectedApiKey, TransientSeamError
from app.timeline import TimelineKind, record_event

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
    replacing_grant_id: str | None
    grant_generation: int
    granted: dict[str, Any] | None
    user_identity_id: str | None

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
            replacing_grant_id=reservation.replacing_grant_id,
            grant_generation=reservation.grant_generation,
            granted=reservation.granted,
            user_identity_id=reservation.user_identity_id,
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
        # UTC to the second whatever the database session's time zone, so equal instants
        # compare equal however Seam or PostgreSQL write them.
        return {
            "starts_at": to_second(self.starts_at) or "",
            "ends_at": to_second(self.ends_at) or "",
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
    wanted: Wanted | None = None
    for _ in range(MAX_SYNC_STEPS):
        if wanted is None:
            wanted = await _read_wanted(runtime, reservation_id)
            if wanted is None:
                return
        step = await _sync_step(runtime, wanted)
        if step is False:
            return
        # A step that wrote the row under its lock hands over what it wrote: no re-read.
        wanted = step if isinstance(step, Wanted) else None
    log.warning("reservations.sync.unsettled", reservation_id=str(reservation_id))


async def _read_wanted(runtime: Runtime, reservation_id: uuid.UUID) -> Wanted | None:
    """The reservation as it stands, with the guest's Seam identity when guestkey knows it
    from an earlier grant (in the same read)."""
    async with autocommit(runtime.sessionmaker) as session:
        reservation = await session.get(Reservation, reservation_id)
        if reservation is None:
            return None
        wanted = Wanted.of(reservation)
        if wanted.user_identity_id is None and wanted.access_grant_id is None:
            known: str | None = await session.scalar(
                select(SeamIdentity.user_identity_id).where(
                    SeamIdentity.user_identity_key == wanted.guest.user_identity_key
                )
            )
            wanted = dataclasses.replace(wanted, user_identity_id=known)
        return wanted


async def _sync_step(runtime: Runtime, wanted: Wanted) -> Wanted | bool:
    """One step towards the reservation at Seam; False when there was nothing (more) to do,
    else True or the reservation as the step left it."""
    logger = log.bind(reservation_id=str(wanted.id))
    try:
        if wanted.status == ReservationStatus.CANCELLED:
            await _revoke(runtime, wanted)
            return False
        if wanted.status == ReservationStatus.FAILED:
            return False
        if wanted.access_grant_id is None:
            return await _create_grant(runtime, wanted)
        if wanted.replacing_grant_id not in (None, wanted.access_grant_id):
            await _delete_replaced_grant(runtime, wanted)
        elif (
            wanted.replacing_grant_id is not None
            or wanted.granted is None
            or _doors(wanted.granted) != wanted.doors
        ):
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
        logger.warning(
            "reservations.sync.retrying",
            error_type=error.error_type,
            status=error.status,
            retry_after=error.retry_after,
        )
        rejected_key = isinstance(error, SeamRejectedApiKey)  # says what to fix itself
        note = str(error) if rejected_key else f"Seam unavailable, retrying: {error}"
        await _note_error(runtime, wanted, note)
        raise
    return False


def _doors(granted: dict[str, Any]) -> dict[str, list[str]]:
    return {name: granted.get(name, []) for name in ("device_ids", "acs_entrance_ids", "space_ids")}


def _window(granted: dict[str, Any]) -> dict[str, str]:
    return {
        "starts_at": to_second(granted.get("starts_at")) or "",
        "ends_at": to_second(granted.get("ends_at")) or "",
    }


async def _find_or_create(runtime: Runtime, wanted: Wanted) -> tuple[Grant, bool]:
    """Create first, look up only when Seam refuses: a grant key is unique in the workspace,
    and so is a guest's inline identity, so a refusal is what tells a retried create (whose
    first answer was lost) from a new stay. A guest whose identity guestkey already knows is
    created for that identity at once; an unknown returning guest costs three more calls."""
    seam = runtime.seam
    identity_id = wanted.user_identity_id  # the guest's, when guestkey made or found it before
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
        return await create(user_identity_id=identity_id), True
    except PermanentSeamError:
        # The error type of a duplicate key is not documented: the key itself says.
        existing = await seam.find_grant(wanted.access_grant_key)
        if existing is not None:
            return existing, False
        if identity_id is not None:
            raise  # refused with a known identity: Seam's words stand
        identity_id = await seam.find_user_identity(wanted.guest)
        if identity_id is None:
            raise  # refused for another reason (unknown door, bad times): Seam's words stand
    return await create(user_identity_id=identity_id), True


async def _create_grant(runtime: Runtime, wanted: Wanted) -> Wanted | bool:
    grant, made = await _find_or_create(runtime, wanted)
    return await _store_grant(runtime, wanted, grant, made)


async def _store_grant(runtime: Runtime, wanted: Wanted, grant: Grant, made: bool) -> Wanted | bool:
    """The grant is the reservation's from now on: its doors start pending, the doors Seam
    left out are marked, and the codes of a grant it replaces are superseded. Returns the
    reservation as stored (True when a failure was recorded after)."""
    # A grant found by key may predate a change (its create's answer was lost): record the
    # times and doors Seam holds, so the sync's next step moves or replaces it.
    held_window = {
        "starts_at": to_second(grant.starts_at) or wanted.window["starts_at"],
        "ends_at": to_second(grant.ends_at) or wanted.window["ends_at"],
    }
    held_doors = wanted.doors if made else await _held_doors(runtime.seam, grant, wanted)
    problems, warnings = doors.grant_problems(grant)
    replaced = wanted.replacing_grant_id
    async with runtime.sessionmaker() as session:
        reservation = await session.get(Reservation, wanted.id, with_for_update=True)
        assert reservation is not None
        reservation.access_grant_id = grant.access_grant_id
        reservation.granted = {**held_doors, **held_window}
        reservation.last_error = None
        reservation.next_check_at = utcnow() + runtime.settings.guestkey_reconcile_after
        reservation.check_count = 0
        reservation.warnings = warnings
        reservation.updated_at = utcnow()
        if reservation.status != ReservationStatus.CANCELLED and (
            reservation.status == ReservationStatus.PENDING or replaced is not None
        ):
            reservation.status = ReservationStatus.GRANTED.value
        if grant.user_identity_id:
            reservation.user_identity_id = grant.user_identity_id
            await _remember_identity(session, wanted.guest, grant.user_identity_id)
        if replaced is not None:
            await codes.supersede_codes(session, reservation_id=wanted.id, reason="doors changed")
        await doors.reset_doors(session, reservation=reservation)
        await _store_access_methods(
            session, wanted.id, grant.access_grant_id, grant.access_method_ids
        )
        await record_event(
            session,
            reservation_id=wanted.id,
            kind=TimelineKind.GRANT_CREATED,
            access_grant_id=grant.access_grant_id,
            access_method_count=len(grant.access_method_ids),
            **({"replaces_access_grant_id": replaced} if replaced else {}),
        )
        await doors.mark_doors(session, reservation_id=wanted.id, problems=problems)
        # With no door left out, every door of the new grant is pending: some can open.
        hopeless = bool(problems) and await doors.none_can_open(session, reservation_id=wanted.id)
        stored = Wanted.of(reservation)
        await session.commit()
    log.info(
        "reservations.grant.created",
        reservation_id=str(wanted.id),
        access_grant_id=grant.access_grant_id,
        doors_left_out=len(problems),
    )
    if hopeless:
        reasons = "; ".join(dict.fromkeys(problem.message for problem in problems))
        await _mark_failed(runtime, wanted, f"no door of this stay can take a PIN code: {reasons}")
        return True
    return stored


async def _remember_identity(session: AsyncSession, guest: GuestIdentity, identity: str) -> None:
    await session.execute(
        insert(SeamIdentity)
        .values(user_identity_key=guest.user_identity_key, user_identity_id=identity)
        .on_conflict_do_update(
            index_elements=["user_identity_key"], set_={"user_identity_id": identity}
        )
    )


async def _held_doors(seam: SeamGateway, grant: Grant, wanted: Wanted) -> dict[str, list[str]]:
    """The doors of a grant found by key, as far as Seam tells (a grant carries no door ids
    itself): the locks and entrances of its spaces — Seam keeps a grant's doors in a space,
    whether or not a code is on them yet — or else those its codes open (`get_related`).
    When they are not the wanted ones, the doors it holds are returned, and the sync replaces
    the grant. Spaces are not compared: Seam names the doors in a space, not the space."""
    held: dict[str, set[str]] = {"device_ids": set(), "acs_entrance_ids": set()}
    for space_id in grant.space_ids:
        held["device_ids"] |= {door.id for door in await seam.list_devices(space_id=space_id)}
        held["acs_entrance_ids"] |= {
            door.id for door in await seam.list_entrances(space_id=space_id)
        }
    if not any(held.values()) and grant.access_method_ids:
        for door in await seam.doors_of(grant.access_method_ids):
            if door.type != "space":
                held[f"{door.type}_ids"].add(door.id)
    if not any(held.values()):
        return wanted.doors  # nothing to ask about: take it as made
    if wanted.space_ids:
        same = all(set(wanted.doors[name]) <= held[name] for name in held)
    else:
        same = all(set(wanted.doors[name]) == held[name] for name in held)
    if same:
        return wanted.doors
    return {name: sorted(ids) for name, ids in held.items()} | {"space_ids": []}


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
                    "state": CodeState.CURRENT.value,
                }
                for access_method_id in ids
            ]
        )
        .on_conflict_do_nothing(index_elements=["access_method_id"])
    )


async def _replace_grant(runtime: Runtime, wanted: Wanted) -> None:
    """Seam cannot change a grant's doors: create the new grant first, under the next key,
    and delete the old one only once the new one exists (the next step), so a create that
    fails or takes long leaves the guest with the access they have."""
    assert wanted.access_grant_id is not None
    if wanted.replacing_grant_id is None:
        # Name the new grant before asking for it: a create whose answer is lost is then
        # found by its key on the retry.
        generation = wanted.grant_generation + 1
        async with runtime.sessionmaker() as session:
            await session.execute(
                update(Reservation)
                .where(Reservation.id == wanted.id)
                .values(
                    replacing_grant_id=wanted.access_grant_id,
                    grant_generation=generation,
                    access_grant_key=grant_key(wanted.id, generation),
                )
            )
            await session.commit()
        wanted = dataclasses.replace(
            wanted,
            replacing_grant_id=wanted.access_grant_id,
            grant_generation=generation,
            access_grant_key=grant_key(wanted.id, generation),
        )
    grant, made = await _find_or_create(runtime, wanted)
    await _store_grant(runtime, wanted, grant, made)


async def _delete_replaced_grant(runtime: Runtime, wanted: Wanted) -> None:
    assert wanted.replacing_grant_id is not None
    deleted = await runtime.seam.delete_grant(wanted.replacing_grant_id)
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(Reservation)
            .where(Reservation.id == wanted.id)
            .values(replacing_grant_id=None, updated_at=utcnow())
        )
        await record_event(
            session,
            reservation_id=wanted.id,
            kind=TimelineKind.GRANT_REPLACED,
            reason="doors changed",
            old_access_grant_id=wanted.replacing_grant_id,
            access_grant_id=wanted.access_grant_id,
            already_gone=not deleted,
        )
        await session.commit()


async def _move_grant(runtime: Runtime, wanted: Wanted) -> None:
    assert wanted.access_grant_id is not None
    await runtime.seam.update_grant_times(
        wanted.access_grant_id, starts_at=wanted.starts_at, ends_at=wanted.ends_at
    )
    async with runtime.sessionmaker() as session:
        reservation = await session.get(Reservation, wanted.id, with_for_update=True)
        assert reservation is not None
        reservation.granted = {**wanted.doors, **wanted.window}
        reservation.last_error = None
        reservation.updated_at = utcnow()
        await record_event(
            session, reservation_id=wanted.id, kind=TimelineKind.TIMES_CHANGED, **wanted.window
        )
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
    """Delete every grant of the stay: the current one, one a door change was replacing, and
    one a create made whose answer never reached guestkey (found by key)."""
    grant_ids = [g for g in (wanted.access_grant_id, wanted.replacing_grant_id) if g]
    if wanted.access_grant_id is None or wanted.replacing_grant_id == wanted.access_grant_id:
        found = await runtime.seam.find_grant(wanted.access_grant_key)
        if found is not None:
            grant_ids.append(found.access_grant_id)
    grant_ids = list(dict.fromkeys(grant_ids))
    if not grant_ids:
        return
    gone = [grant_id for grant_id in grant_ids if not await runtime.seam.delete_grant(grant_id)]
    if gone:
        await _grant_missing(runtime, wanted, gone[0])
    async with runtime.sessionmaker() as session:
        await _forget_grant(session, wanted)
        for grant_id in grant_ids:
            await record_event(
                session,
                reservation_id=wanted.id,
                kind=TimelineKind.GRANT_DELETED,
                reason="reservation cancelled",
                access_grant_id=grant_id,
            )
        await session.commit()


async def _grant_missing(runtime: Runtime, wanted: Wanted, grant_id: str) -> None:
    """A grant guestkey made that Seam does not know is not "already deleted": guestkey may be
    talking to another workspace, or to a fake, while the guest's real grant still opens the
    door. Recorded once, logged as an error, counted, and retried (DESIGN.md §9.1)."""
    GRANTS_MISSING.inc()
    log.error("reservations.grant_missing", reservation_id=str(wanted.id), access_grant_id=grant_id)
    async with runtime.sessionmaker() as session:
        recorded = await session.scalar(
            select(ReservationEvent.id).where(
                ReservationEvent.reservation_id == wanted.id,
                ReservationEvent.kind == TimelineKind.GRANT_MISSING.value,
            )
        )
        if recorded is None:
            await record_event(
                session,
                reservation_id=wanted.id,
                kind=TimelineKind.GRANT_MISSING,
                reason="Seam does not know the grant guestkey made; the cancellation is retried",
                access_grant_id=grant_id,
            )
            await session.commit()
    raise TransientSeamError(
        f"Seam has no access grant {grant_id}, which guestkey made: is SEAM_API_KEY the key of "
        "the workspace the grant was made in?",
        error_type="grant_missing",
    )


async def _forget_grant(session: AsyncSession, wanted: Wanted) -> None:
    """Cancelled: nothing left at Seam to watch, and no code is the guest's any more."""
    now = utcnow()
    await session.execute(
        update(Reservation)
        .where(Reservation.id == wanted.id)
        .values(
            access_grant_id=None,
            replacing_grant_id=None,
            granted=None,
            next_check_at=None,
            updated_at=now,
        )
    )
    await session.execute(
        update(AccessMethod)
        .where(
            AccessMethod.reservation_id == wanted.id,
            AccessMethod.state == CodeState.CURRENT.value,
        )
        .values(state=CodeState.REVOKED.value, removed_at=now)
    )


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
            await record_event(
                session, reservation_id=wanted.id, kind=TimelineKind.FAILED, reason=reason
            )
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


def to_second(value: str | datetime | None) -> str | None:
    """An instant as UTC ISO 8601 to the second: Seam answers milliseconds, PostgreSQL keeps
    microseconds, and neither is a change of the stay."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0).isoformat()
