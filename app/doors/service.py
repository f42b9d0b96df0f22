"""The workspace's doors (DESIGN.md §9.2): devices, ACS entrances and spaces as last read from
Seam, and the check a PUT's new doors go through.

The list is refreshed in full on a schedule and after door events (`tasks.py`); a PUT's check
reads it first and asks Seam only about ids it does not hold as usable, within
`CHECK_TIMEOUT_SECONDS`. When Seam cannot answer in time the PUT is accepted: the sync meets
the door at Seam and the reservation records what Seam says of it.

Functions take `(session, *, …)`, flush, and never commit: the caller owns the transaction.
`check_doors` alone takes the sessionmaker: it holds a connection of the pool only to read and
to store, never while it waits for Seam.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

import structlog
from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import autocommit, utcnow
from app.doors.models import Door
from app.errors import InvalidInput
from app.seam.client import DoorInfo, DoorType, SeamGateway
from app.seam.errors import SeamError
from app.worker.queue import Priority, defer

log = structlog.get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
REFRESH_AFTER_EVENT = timedelta(seconds=15)
DOOR_FIELDS: dict[str, DoorType] = {
    "device_ids": "device",
    "acs_entrance_ids": "acs_entrance",
    "space_ids": "space",
}
REFRESH_LOCK = "doors-refresh"
STORE_CHUNK = 1000


# --- the list --------------------------------------------------------------------------------


async def list_doors(session: AsyncSession) -> list[Door]:
    """The doors Seam last listed, devices first, then entrances, then spaces; by name."""
    rows = await session.scalars(
        select(Door).where(Door.gone_at.is_(None)).order_by(Door.door_type, Door.name, Door.door_id)
    )
    order = list(DOOR_FIELDS.values())
    return sorted(rows, key=lambda door: order.index(door.door_type))  # type: ignore[arg-type]


async def store(session: AsyncSession, *, doors: Iterable[DoorInfo], now: datetime) -> None:
    """Insert or update these doors as seen at `now` (a door seen again is no longer gone).
    Rows go in a fixed order, so a refresh and a PUT's check never wait on each other in a
    circle; in chunks, to stay far below PostgreSQL's limit of bound parameters."""
    values = [
        {
            "id": uuid.uuid4(),
            "door_type": door.type,
            "door_id": door.id,
            "name": door.name,
            "can_take_pin_code": door.can_take_pin_code,
            "online": door.online,
            "refreshed_at": now,
            "gone_at": None,
        }
        for door in sorted(doors, key=lambda door: (door.type, door.id))
    ]
    for start in range(0, len(values), STORE_CHUNK):
        statement = insert(Door).values(values[start : start + STORE_CHUNK])
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["door_type", "door_id"],
                set_={
                    name: statement.excluded[name]
                    for name in ("name", "can_take_pin_code", "online", "refreshed_at", "gone_at")
                },
            )
        )


async def read_workspace_doors(seam: SeamGateway) -> list[DoorInfo]:
    """Every door of the workspace, each list paged through to its end."""
    devices, entrances, spaces = await asyncio.gather(
        seam.list_devices(), seam.list_entrances(), seam.list_spaces()
    )
    return [*devices, *entrances, *spaces]


async def replace_all(session: AsyncSession, *, doors: Sequence[DoorInfo]) -> int:
    """Store a full listing: what it holds is refreshed, every other door is marked gone.
    Returns how many doors went."""
    now = utcnow()
    await store(session, doors=doors, now=now)
    gone = await session.execute(
        update(Door)
        .where(Door.gone_at.is_(None), Door.refreshed_at < now)
        .values(gone_at=now)
        .returning(Door.door_id)
    )
    return len(gone.all())


async def enqueue_refresh(session: AsyncSession) -> None:
    """A refresh of the whole list, once however many door events ask for one meanwhile: it
    runs REFRESH_AFTER_EVENT after the first, so a lock going on and offline over and over
    costs Seam one listing of the workspace's doors per that time, not one per event. (A PUT
    meanwhile asks Seam about any door the list does not hold as usable.)"""
    from app.doors.tasks import refresh_doors  # tasks import this module

    await defer(
        session,
        refresh_doors,
        lock=REFRESH_LOCK,
        queueing_lock=REFRESH_LOCK,
        schedule_at=utcnow() + REFRESH_AFTER_EVENT,
        priority=Priority.STAY,
    )


# --- the check at PUT ------------------------------------------------------------------------


@dataclass(frozen=True)
class DoorProblem:
    field: str
    index: int
    door_id: str
    reason: str  # unknown_door | cannot_take_pin_code
    message: str


class UnusableDoors(InvalidInput):
    """Doors Seam does not know, or that cannot take a PIN code: one `detail` entry each."""

    code: ClassVar[str] = "unusable_door"

    def __init__(self, problems: Sequence[DoorProblem]) -> None:
        first = problems[0]
        super().__init__(first.message, location=("body", first.field, first.index))
        self.problems = list(problems)

    def detail(self) -> list[dict[str, Any]]:
        return [
            {
                "loc": ["body", problem.field, problem.index],
                "msg": problem.message,
                "type": problem.reason,
                "input": problem.door_id,
            }
            for problem in self.problems
        ]


def as_sent(raw_body: Any, field: str, validated: list[str]) -> list[str]:
    """The door ids of `field` in the order the client sent them (normalised like the
    validated body), so an error's index points at the client's own list."""
    sent = raw_body.get(field) if isinstance(raw_body, dict) else None
    if not isinstance(sent, list):
        return validated
    try:
        return [str(uuid.UUID(str(door_id).strip())) for door_id in sent]
    except ValueError:
        return validated


# What the list holds of the doors named by the pairs of `%(door_types)s` and `%(door_ids)s`,
# as one JSON value: a part of a statement that reads it with other things (the PUT's).
# `parse_known` reads it; `check_doors(known=…)` takes that.
KNOWN_DOORS = """(
    SELECT json_agg(json_build_object(
            'door_type', door.door_type, 'door_id', door.door_id,
            'can_take_pin_code', door.can_take_pin_code))
    FROM door
    WHERE door.gone_at IS NULL
        AND (door.door_type, door.door_id) IN (
            SELECT * FROM unnest(%(door_types)s::text[], %(door_ids)s::text[])))"""


def parse_known(value: list[dict[str, Any]] | None) -> dict[tuple[str, str], bool]:
    """{(door type, door id): can take a PIN code} from a `known_doors` value."""
    return {(door["door_type"], door["door_id"]): door["can_take_pin_code"] for door in value or ()}


async def check_doors(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    seam: SeamGateway,
    new: Mapping[str, Sequence[tuple[int, str]]],
    seam_wait_seconds: float = CHECK_TIMEOUT_SECONDS,
    known: Mapping[tuple[str, str], bool] | None = None,
) -> None:
    """Check the doors a PUT adds to its reservation (all of them for a new one); doors it
    already had were checked when they were added. Raises `UnusableDoors`.

    `new`: per body field, (index, door id) pairs to check. `known`: what the list holds of
    them, when the caller read it already (`known_doors`); else it is read here. What Seam
    says of the doors is stored in a transaction of its own: kept when the check refuses."""
    wanted: set[tuple[DoorType, str]] = {
        (DOOR_FIELDS[field], door_id) for field, pairs in new.items() for _, door_id in pairs
    }
    if known is None:
        async with autocommit(sessionmaker) as session:
            cached = await session.scalars(
                select(Door).where(
                    tuple_(Door.door_type, Door.door_id).in_(list(wanted)), Door.gone_at.is_(None)
                )
            )
            known = {(door.door_type, door.door_id): door.can_take_pin_code for door in cached}
    # A door the list holds as usable passes; any other is asked about, so a door added or
    # given a keypad since the last refresh is not refused on stale knowledge.
    holds = dict(known)
    unsure = {key for key in wanted if not holds.get(key)}
    names: dict[tuple[str, str], str] = {}
    if unsure:
        try:
            async with asyncio.timeout(seam_wait_seconds):
                found = await _ask_seam(seam, unsure)
        except (SeamError, TimeoutError) as error:
            log.warning(
                "doors.check_deferred",
                doors=len(unsure),
                reason=type(error).__name__,
                hint="accepted; the sync meets the doors at Seam",
            )
            return
        async with autocommit(sessionmaker) as session:
            await store(session, doors=found, now=utcnow())
        holds.update({(door.type, door.id): door.can_take_pin_code for door in found})
        names = {(door.type, door.id): door.name for door in found}
    problems = []
    for field, pairs in new.items():
        door_type = DOOR_FIELDS[field]
        for index, door_id in pairs:
            usable = holds.get((door_type, door_id))
            if usable is None:
                problems.append(
                    DoorProblem(
                        field,
                        index,
                        door_id,
                        "unknown_door",
                        f"{_kind(door_type)} {door_id} is not a door of the Seam workspace",
                    )
                )
            elif not usable:
                problems.append(
                    DoorProblem(
                        field,
                        index,
                        door_id,
                        "cannot_take_pin_code",
                        _cannot_take_code(door_type, door_id, names.get((door_type, door_id))),
                    )
                )
    if problems:
        raise UnusableDoors(problems)


async def _ask_seam(seam: SeamGateway, keys: set[tuple[DoorType, str]]) -> list[DoorInfo]:
    device_ids = sorted(door_id for door_type, door_id in keys if door_type == "device")
    entrance_ids = sorted(door_id for door_type, door_id in keys if door_type == "acs_entrance")
    space_ids = {door_id for door_type, door_id in keys if door_type == "space"}
    calls = []
    if device_ids:
        calls.append(seam.list_devices(device_ids=device_ids))
    if entrance_ids:
        calls.append(seam.list_entrances(acs_entrance_ids=entrance_ids))
    if space_ids:
        calls.append(seam.list_spaces())  # Seam lists spaces, it does not filter them by id
    found = [door for doors in await asyncio.gather(*calls) for door in doors]
    return [door for door in found if (door.type, door.id) in keys]


def _kind(door_type: str) -> str:
    return {"device": "device", "acs_entrance": "ACS entrance", "space": "space"}[door_type]


def _cannot_take_code(door_type: str, door_id: str, name: str | None) -> str:
    named = f"{_kind(door_type)} {door_id}" + (f" ({name})" if name else "")
    if door_type == "acs_entrance":
        return f"{named} does not open with a PIN code (Seam: can_unlock_with_code is not true)"
    return (
        f"{named} cannot take a PIN code: Seam cannot program online access codes on it "
        "(can_program_online_access_codes is not true; e.g. a lock without a keypad)"
    )
