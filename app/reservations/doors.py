"""A reservation's doors and warnings: which door the code opens, which it cannot, and why
(DESIGN.md §9.2).

Doors start as the booking system asked for them (`pending`); Seam's answer to the grant
marks the ones that cannot take a PIN code (`unsupported`) or did not get one (`failed`); the
doors Seam names for an issued code are `granted`; Seam's door events move them to `granted`
or `lost`. A reservation is `failed` only when none of its doors can be opened.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.reservations.models import DoorState, Reservation, ReservationDoor
from app.seam.client import Door, DoorType, Grant
from app.timeline import TimelineKind, record_event

# Grant warnings about Seam's own bookkeeping, not about the guest's access.
_QUIET_GRANT_WARNINGS = frozenset(
    {"being_deleted", "updating_access_times", "requested_code_unavailable"}
)
MISSING_CODES = "cannot_create_requested_access_methods"
UNSUPPORTED = "device_does_not_support_access_codes"


@dataclass(frozen=True)
class DoorProblem:
    door_id: str
    state: DoorState
    code: str
    message: str


def requested_doors(reservation: Reservation) -> list[tuple[DoorType, str]]:
    return [
        *(("device", door_id) for door_id in reservation.device_ids),
        *(("acs_entrance", door_id) for door_id in reservation.acs_entrance_ids),
        *(("space", space_id) for space_id in reservation.space_ids),
    ]


def grant_problems(grant: Grant) -> tuple[list[DoorProblem], list[dict[str, Any]]]:
    """The doors a new grant leaves out, and the reservation warnings its answer carries."""
    problems: list[DoorProblem] = []
    warnings: list[dict[str, Any]] = []
    for warning in grant.warnings:
        code = str(warning.get("warning_code") or "warning")
        if code in _QUIET_GRANT_WARNINGS:
            continue
        door_id = warning.get("device_id") or warning.get("acs_entrance_id")
        message = str(warning.get("message") or code.replace("_", " "))
        warnings.append(make_warning(code, message, door_id))
        if code == UNSUPPORTED and door_id:
            problems.append(DoorProblem(str(door_id), DoorState.UNSUPPORTED, code, message))
    for error in grant.errors:
        if error.get("error_code") != MISSING_CODES:
            continue
        message = str(error.get("message") or "Seam could not create the PIN code")
        missing = [str(door_id) for door_id in error.get("missing_device_ids") or []]
        for door_id in missing:
            warnings.append(make_warning(MISSING_CODES, message, door_id))
            problems.append(DoorProblem(door_id, DoorState.FAILED, MISSING_CODES, message))
        if not missing:
            warnings.append(make_warning(MISSING_CODES, message, None))
    return problems, warnings


def make_warning(code: str, message: str, door_id: object = None) -> dict[str, Any]:
    return {"code": code, "message": message, "door_id": str(door_id) if door_id else None}


def merge_warnings(
    current: Sequence[dict[str, Any]],
    added: Iterable[dict[str, Any]] = (),
    *,
    drop_codes: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """`current` without the `drop_codes`, plus `added`, each (code, door) once."""
    dropped = set(drop_codes)
    merged: dict[tuple[str, str | None], dict[str, Any]] = {
        (w["code"], w.get("door_id")): w for w in current if w["code"] not in dropped
    }
    for warning in added:
        merged[(warning["code"], warning.get("door_id"))] = warning
    return list(merged.values())


async def reset_doors(
    session: AsyncSession,
    *,
    reservation: Reservation,
    names: dict[str, str] | None = None,
) -> None:
    """A new grant: the doors are the requested ones again, each pending."""
    await session.execute(
        delete(ReservationDoor).where(ReservationDoor.reservation_id == reservation.id)
    )
    rows = [
        {
            "id": uuid.uuid4(),
            "reservation_id": reservation.id,
            "door_type": door_type,
            "door_id": door_id,
            "name": (names or {}).get(door_id),
            "state": DoorState.PENDING.value,
            "position": position,
        }
        for position, (door_type, door_id) in enumerate(requested_doors(reservation))
    ]
    if rows:
        await session.execute(insert(ReservationDoor).values(rows))


async def mark_doors(
    session: AsyncSession,
    *,
    reservation_id: uuid.UUID,
    problems: Sequence[DoorProblem],
) -> None:
    for problem in problems:
        changed = await session.execute(
            update(ReservationDoor)
            .where(
                ReservationDoor.reservation_id == reservation_id,
                ReservationDoor.door_id == problem.door_id,
                ReservationDoor.state != problem.state.value,
            )
            .values(state=problem.state.value, reason=problem.message)
            .returning(ReservationDoor.id)
        )
        if changed.first() is not None:
            kind = (
                TimelineKind.DOOR_UNSUPPORTED
                if problem.state == DoorState.UNSUPPORTED
                else TimelineKind.DOOR_FAILED
            )
            await record_event(
                session,
                reservation_id=reservation_id,
                kind=kind,
                reason=problem.message,
                door_id=problem.door_id,
            )


async def set_door_state(
    session: AsyncSession,
    *,
    reservation_id: uuid.UUID,
    door_type: DoorType,
    door_id: str,
    state: DoorState,
    reason: str | None = None,
) -> None:
    """A door event from Seam: the door gets the state, whether or not it was asked for by
    id (an entrance of a space is named only by Seam)."""
    await session.execute(
        insert(ReservationDoor)
        .values(
            id=uuid.uuid4(),
            reservation_id=reservation_id,
            door_type=door_type,
            door_id=door_id,
            state=state.value,
            reason=reason,
            position=1000,
        )
        .on_conflict_do_update(
            index_elements=["reservation_id", "door_type", "door_id"],
            set_={"state": state.value, "reason": reason},
        )
    )


async def store_granted_doors(
    session: AsyncSession, *, reservation_id: uuid.UUID, doors: Sequence[Door]
) -> None:
    """The doors Seam names for an issued code are granted, under Seam's names. A space the
    booking system asked for stays listed only while Seam names no door in it."""
    rows = {
        (door.type, door.id): {
            "id": uuid.uuid4(),
            "reservation_id": reservation_id,
            "door_type": door.type,
            "door_id": door.id,
            "name": door.name,
            "state": DoorState.GRANTED.value,
            "position": position,
        }
        for position, door in reversed(list(enumerate(doors)))  # the first of a repeated door
    }
    if rows:
        statement = insert(ReservationDoor).values(
            sorted(rows.values(), key=lambda row: row["position"])
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["reservation_id", "door_type", "door_id"],
                set_={
                    "name": statement.excluded.name,
                    "state": DoorState.GRANTED.value,
                    "reason": None,
                },
            )
        )
    if any(door.type != "space" for door in doors):
        await session.execute(
            delete(ReservationDoor).where(
                ReservationDoor.reservation_id == reservation_id,
                ReservationDoor.door_type == "space",
            )
        )


async def none_can_open(session: AsyncSession, *, reservation_id: uuid.UUID) -> bool:
    """Whether every door of the reservation is unsupported or failed."""
    states = set(
        await session.scalars(
            select(ReservationDoor.state).where(ReservationDoor.reservation_id == reservation_id)
        )
    )
    return bool(states) and states <= {DoorState.UNSUPPORTED.value, DoorState.FAILED.value}


async def the_only_door_unserved(session: AsyncSession, *, reservation_id: uuid.UUID) -> list[str]:
    """The reservation's door when it has one lock or entrance only, not granted yet."""
    rows = (
        await session.execute(
            select(ReservationDoor.door_type, ReservationDoor.door_id, ReservationDoor.state)
            .where(ReservationDoor.reservation_id == reservation_id)
            .limit(2)
        )
    ).all()
    if len(rows) != 1:
        return []
    [(door_type, door_id, state)] = rows
    unserved = door_type in ("device", "acs_entrance") and state != DoorState.GRANTED.value
    return [door_id] if unserved else []


async def granted_door_names(session: AsyncSession, *, reservation_id: uuid.UUID) -> list[str]:
    """What the guest's message lists: only the doors the code opens."""
    names = await session.scalars(
        select(ReservationDoor.name)
        .where(
            ReservationDoor.reservation_id == reservation_id,
            ReservationDoor.state == DoorState.GRANTED.value,
            ReservationDoor.name.is_not(None),
        )
        .order_by(ReservationDoor.position, ReservationDoor.name)
    )
    return [name for name in names if name]
