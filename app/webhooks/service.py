"""The inbox: store each verified delivery once and enqueue its processing with it."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import structlog
from psycopg.types.json import Jsonb
from sqlalchemy import (
    Table,
    Text,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.db import GroupCommit, fetch_on_driver, utcnow
from app.doors.service import enqueue_refresh as enqueue_door_refresh
from app.reservations.models import AccessMethod, Reservation
from app.reservations.service import reservation_lock
from app.webhooks.events import DOOR_EVENTS, HANDLED_EVENTS, UNHANDLED
from app.webhooks.models import InboxOutcome, SeamWebhook
from app.worker.queue import Priority, defer

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Intake:
    outcome: str  # accepted | ignored | duplicate | rejected
    reason: str | None = None


def redact(payload: dict[str, Any]) -> dict[str, Any]:
    """The inbox keeps events, not PIN codes: Seam may put a code in an event, at any depth,
    and guestkey re-reads it from Seam anyway, then stores it encrypted."""
    redacted = _redact(payload)
    assert isinstance(redacted, dict)
    return redacted


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: ("[redacted]" if item is not None else None) if key == "code" else _redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact(item) for item in value]
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _storable(payload: Any) -> bool:
    """PostgreSQL's jsonb takes no NUL character and no lone surrogate."""
    text = json.dumps(payload, ensure_ascii=False)
    if "\\u0000" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_event(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(event, None) for a Seam event; (payload or None, why not) otherwise."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant)  # NaN, Infinity: not JSON
    except ValueError:
        return None, "not_json"
    # An ASCII body without NUL bytes is parsed as UTF-8 (NUL bytes are how the parser tells
    # UTF-16 and UTF-32), where a NUL or a lone surrogate can only come from a `\u` escape:
    # such bodies, nearly all, skip the full check.
    plain = body.isascii() and b"\x00" not in body and b"\\u" not in body
    if not plain and not _storable(payload):
        return None, "unstorable_json"
    if not isinstance(payload, dict):
        return None, "not_an_object"
    event_id, event_type = payload.get("event_id"), payload.get("event_type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        return payload, "not_a_seam_event"
    return payload, None


# One Core statement with bound parameters, compiled once: the webhook hot path skips the
# ORM's bulk-insert machinery and per-request `values()` coercion.
_INBOX = cast(Table, SeamWebhook.__table__)
_INSERT = insert(_INBOX).on_conflict_do_nothing().returning(_INBOX.c.id)

# The events of one reservation are applied by one job (`flows.apply_seam_events`) that takes every
# event routed to the reservation, in order. An event is stored as routed, naming its
# reservation, and that job is enqueued unless one is already waiting; the job reads the
# events under an exclusive advisory lock that every routing transaction holds shared from
# before its insert until its commit, so a waiting job cannot miss an event whose routing saw
# it waiting (the job's read waits for that commit), and an event routed after the job's read
# finds no job waiting and enqueues the next one.
EVENTS_TASK = "webhooks.apply_seam_event"
_EVENTS_LOCK_KEY = "hashtextextended('reservation-events:' || CAST(:reservation_id AS text), 0)"
_LOCK_SHARED = text(f"SELECT pg_advisory_xact_lock_shared({_EVENTS_LOCK_KEY})")
LOCK_EVENTS = text(f"SELECT pg_advisory_xact_lock({_EVENTS_LOCK_KEY})")
# The same shared lock, taken in the look-up that finds the reservation.
_LOCK_SHARED_COLUMN = func.pg_advisory_xact_lock_shared(
    func.hashtextextended(
        literal_column("'reservation-events:'", Text) + sql_cast(Reservation.id, Text), 0
    )
)
# The job, unless one is waiting: procrastinate's own unique index on a waiting job's
# queueing lock decides, with no savepoint and no error.
_ENQUEUE_EVENTS = text(
    """
    INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args)
    VALUES ('default', :task_name, :priority, :lock, :queueing_lock, :args)
    ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
    """
).bindparams(bindparam("args", type_=JSONB))
# Intake's one statement for a routed event: the row and, when it is new, the same job.
_INSERT_ROUTED = text(
    """
    WITH event AS (
        INSERT INTO seam_webhook
            (id, svix_id, event_id, event_type, payload, outcome, processed_at, reservation_id)
        VALUES (:id, :svix_id, :event_id, :event_type, :payload, :outcome, :processed_at,
                :reservation_id)
        ON CONFLICT DO NOTHING
        RETURNING id
    ), job AS (
        INSERT INTO procrastinate_jobs
            (queue_name, task_name, priority, lock, queueing_lock, args)
        SELECT 'default', :task_name, :priority, :lock, :queueing_lock, :args FROM event
        ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
    )
    SELECT id FROM event
    """
).bindparams(bindparam("payload", type_=JSONB), bindparam("args", type_=JSONB))


def _events_job(route: Route) -> dict[str, Any]:
    """The parameters of a reservation's events job. Until guestkey has stored the grant,
    the job waits for the reservation's first sync, so it must not outrank that sync: a
    waiting job of higher priority holds back every job of lower priority under the same
    lock."""
    return {
        "task_name": EVENTS_TASK,
        "priority": int(Priority.STAY if route.granted else Priority.NEW_STAY),
        "lock": reservation_lock(route.reservation_id),
        "queueing_lock": f"reservation-events:{route.reservation_id}",
        "args": {"reservation_id": str(route.reservation_id)},
    }


# Intake's one-statement paths, group-committed (`db.GroupCommit`): each statement writes the
# rows of every delivery that arrived while the previous ones ran, passed as one JSON array
# (psycopg parameters, on the driver). `received_at` is each row's own clock reading, so the
# rows of a batch keep the order they arrived in.
_BATCH_ROWS = """
    ROWS FROM (jsonb_to_recordset(%(rows)s) AS (
        id uuid, svix_id text, event_id text, event_type text, payload jsonb,
        body_sha256 text, body_length integer, outcome text, outcome_reason text, keys text[]
    )) WITH ORDINALITY AS batch (
        id, svix_id, event_id, event_type, payload, body_sha256, body_length, outcome,
        outcome_reason, keys, position)
"""
# An ignored event, or a body that is not an event: stored as it is, with nothing to do.
_INSERT_PLAIN = f"""
    INSERT INTO seam_webhook (id, svix_id, event_id, event_type, payload, body_sha256,
                              body_length, outcome, outcome_reason, processed_at, received_at)
    SELECT id, svix_id, event_id, event_type, payload, body_sha256, body_length, outcome,
           outcome_reason, now(), clock_timestamp()
    FROM {_BATCH_ROWS}
    ORDER BY position
    ON CONFLICT DO NOTHING
    RETURNING id
"""  # noqa: S608 - a constant of this module; the rows are one bound parameter
# Handled events naming a grant key, as Seam's do: the look-up, each found reservation's events
# lock (shared, taken in the order of the reservations' ids, so two batches never wait on each
# other in a circle, and all of them before any row is written), the routed rows and, unless
# one is waiting, each reservation's events job. An event whose key no reservation holds, or a
# duplicate, is not stored: `store_delivery` then takes the general path.
_INSERT_ROUTED_BY_KEY = f"""
    WITH batch AS MATERIALIZED (
        SELECT * FROM {_BATCH_ROWS}
    ), found AS MATERIALIZED (
        SELECT batch.id AS event_row, reservation.id AS reservation_id, reservation.granted
        FROM batch CROSS JOIN LATERAL (
            SELECT id, access_grant_id IS NOT NULL AS granted FROM reservation
            WHERE access_grant_key = ANY(batch.keys) LIMIT 1
        ) AS reservation
    ), locked AS MATERIALIZED (
        SELECT count(*) AS held FROM (
            SELECT pg_advisory_xact_lock_shared(
                       hashtextextended('reservation-events:' || id::text, 0))
            FROM (SELECT DISTINCT reservation_id AS id FROM found ORDER BY 1) AS ordered
        ) AS taken
    ), event AS (
        INSERT INTO seam_webhook (id, svix_id, event_id, event_type, payload, outcome,
                                  processed_at, received_at, reservation_id)
        SELECT batch.id, batch.svix_id, batch.event_id, batch.event_type, batch.payload,
               'routed', now(), clock_timestamp(), found.reservation_id
        FROM batch JOIN found ON found.event_row = batch.id CROSS JOIN locked
        ORDER BY batch.position
        ON CONFLICT DO NOTHING
        RETURNING id, reservation_id
    ), job AS (
        INSERT INTO procrastinate_jobs
            (queue_name, task_name, priority, lock, queueing_lock, args)
        SELECT DISTINCT ON (found.reservation_id) 'default', %(task_name)s,
               CASE WHEN found.granted THEN %(stay_priority)s ELSE %(new_stay_priority)s END,
               'reservation:' || found.reservation_id,
               'reservation-events:' || found.reservation_id,
               jsonb_build_object('reservation_id', found.reservation_id::text)
        FROM event JOIN found ON found.event_row = event.id
        ORDER BY found.reservation_id
        ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
    )
    SELECT id FROM event
"""  # noqa: S608 - constants of this module; the rows are one bound parameter


def _as_batch(rows: list[dict[str, Any]]) -> Jsonb:
    return Jsonb(rows, dumps=_dumps_with_ids)


def _dumps_with_ids(value: Any) -> str:
    return json.dumps(value, default=str)  # the rows' uuids


async def _write_plain(connection: AsyncConnection, rows: list[dict[str, Any]]) -> list[bool]:
    stored = await fetch_on_driver(connection, _INSERT_PLAIN, {"rows": _as_batch(rows)})
    return _which_stored(rows, stored)


async def _write_routed(connection: AsyncConnection, rows: list[dict[str, Any]]) -> list[bool]:
    stored = await fetch_on_driver(
        connection,
        _INSERT_ROUTED_BY_KEY,
        {
            "rows": _as_batch(rows),
            "task_name": EVENTS_TASK,
            "stay_priority": int(Priority.STAY),
            "new_stay_priority": int(Priority.NEW_STAY),
        },
    )
    return _which_stored(rows, stored)


def _which_stored(rows: list[dict[str, Any]], stored: list[tuple[Any, ...]]) -> list[bool]:
    ids = {row_id for (row_id,) in stored}
    return [row["id"] in ids for row in rows]


class Inbox:
    """Where intake writes: the group-committed one-statement paths, and the sessions of the
    rest (a door event, an event to be found by its Seam ids)."""

    def __init__(self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self.plain: GroupCommit[dict[str, Any], bool] = GroupCommit(engine, _write_plain)
        self.routed: GroupCommit[dict[str, Any], bool] = GroupCommit(engine, _write_routed)


async def store_delivery(inbox: Inbox, *, svix_id: str, body: bytes) -> Intake:
    """Store a verified delivery once, with the work it asks for. An event guestkey does not
    act on, a body that is not an event, and a handled event naming its grant key share a
    statement with the deliveries that arrive with them, and take no transaction of their own;
    the rest one transaction."""
    payload, problem = parse_event(body)
    if problem is not None:
        row = {
            "id": uuid.uuid4(),
            "svix_id": svix_id,
            "event_id": None,
            "event_type": None,
            # A body that is not a Seam event may hold anything: its digest and length only.
            "payload": None,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_length": len(body),
            "outcome": InboxOutcome.REJECTED.value,
            "outcome_reason": problem,
        }
        if not await inbox.plain.submit(row, size=len(body)):
            return Intake("duplicate")
        log.error("webhooks.seam.rejected", svix_id=svix_id, reason=problem)
        return Intake("rejected", problem)

    assert payload is not None
    event_type = payload["event_type"]
    row = {
        "id": uuid.uuid4(),
        "svix_id": svix_id,
        "event_id": payload["event_id"],
        "event_type": event_type,
        "payload": redact(payload),
    }
    if event_type not in HANDLED_EVENTS and event_type not in DOOR_EVENTS:
        stored = await inbox.plain.submit(
            row | {"outcome": InboxOutcome.IGNORED.value, "outcome_reason": UNHANDLED},
            size=len(body),
        )
        # stored for the record; no job, nothing to do
        return Intake("ignored" if stored else "duplicate")

    keys = strings(payload.get("access_grant_key"), payload.get("access_grant_keys"))
    if (
        event_type in HANDLED_EVENTS
        and keys
        and await inbox.routed.submit(row | {"keys": keys}, size=len(body))
    ):
        return Intake("accepted")

    async with inbox.sessionmaker() as session:
        intake = await _store_in_transaction(session, row, payload)
        await session.commit()
    return intake


async def _store_in_transaction(
    session: AsyncSession, row: dict[str, Any], payload: dict[str, Any]
) -> Intake:
    """A door event with its door-list refresh; a handled event with its routing."""
    if payload["event_type"] in DOOR_EVENTS:
        row |= {
            "outcome": InboxOutcome.PROCESSED.value,  # by the door list's refresh
            "outcome_reason": None,
            "processed_at": utcnow(),
        }
        if await session.scalar(_INSERT, row) is None:
            return Intake("duplicate")
        await enqueue_door_refresh(session)
        return Intake("accepted")

    route = await find_reservation(session, payload, lock=True)
    if route is not None:
        stored = await session.scalar(
            _INSERT_ROUTED,
            row
            | {
                "outcome": InboxOutcome.ROUTED.value,
                "processed_at": utcnow(),
                "reservation_id": route.reservation_id,
            }
            | _events_job(route),
        )
        return Intake("accepted" if stored else "duplicate")
    row |= {"outcome": InboxOutcome.RECEIVED.value, "outcome_reason": None, "processed_at": None}
    stored = await session.scalar(_INSERT, row)
    if stored is None:
        return Intake("duplicate")
    await enqueue_routing(session, webhook_id=stored)
    return Intake("accepted")


def strings(*values: Any) -> list[str]:
    found: list[str] = []
    for value in values:
        if isinstance(value, str) and value:
            found.append(value)
        elif isinstance(value, list):
            found += [item for item in value if isinstance(item, str) and item]
    return found


class Route(NamedTuple):
    reservation_id: uuid.UUID
    granted: bool  # guestkey has stored the reservation's grant (its first sync is done)


async def find_reservation(
    session: AsyncSession, payload: dict[str, Any], *, lock: bool = False
) -> Route | None:
    """By our grant key, the access method id, or the grant id(s) the event names. `lock`:
    the caller routes the event in this transaction, so the found reservation's events lock
    is taken (shared, until the transaction ends): in the look-up itself when the event names
    a grant key, as Seam's do."""
    keys = strings(payload.get("access_grant_key"), payload.get("access_grant_keys"))
    if keys:
        query = select(Reservation.id, Reservation.access_grant_id.is_not(None))
        if lock:
            query = query.add_columns(_LOCK_SHARED_COLUMN)
        row = (
            await session.execute(query.where(Reservation.access_grant_key.in_(keys)).limit(1))
        ).first()
        if row is not None:
            reservation_id: uuid.UUID = row[0]
            return Route(reservation_id, bool(row[1]))
    route = await _find_by_seam_ids(session, payload)
    if route is not None and lock:
        await session.execute(_LOCK_SHARED, {"reservation_id": route.reservation_id})
    return route


async def _find_by_seam_ids(session: AsyncSession, payload: dict[str, Any]) -> Route | None:
    method_ids = strings(payload.get("access_method_id"))
    grant_ids = strings(payload.get("access_grant_id"), payload.get("access_grant_ids"))
    if method_ids or grant_ids:
        found = await session.scalar(
            select(AccessMethod.reservation_id)
            .where(
                or_(
                    AccessMethod.access_method_id.in_(method_ids),
                    AccessMethod.access_grant_id.in_(grant_ids),
                )
            )
            .limit(1)
        )
        if found is not None:
            return Route(found, granted=True)  # access methods are stored with the grant
    if grant_ids:
        found = await session.scalar(
            select(Reservation.id).where(Reservation.access_grant_id.in_(grant_ids)).limit(1)
        )
        if found is not None:
            return Route(found, granted=True)
    return None


async def finish(
    session: AsyncSession, webhook_id: uuid.UUID, outcome: InboxOutcome, reason: str | None = None
) -> None:
    await session.execute(
        update(SeamWebhook)
        .where(SeamWebhook.id == webhook_id)
        .values(outcome=outcome.value, outcome_reason=reason, processed_at=utcnow())
    )


async def enqueue_routing(session: AsyncSession, *, webhook_id: uuid.UUID) -> None:
    """A stored, handled event whose reservation intake did not find goes to routing, which
    retries while the grant may still be on its way (in the caller's transaction)."""
    from app.webhooks.tasks import process_seam_event  # tasks import this module

    await defer(session, process_seam_event, webhook_id=str(webhook_id))


async def enqueue_stored(
    session: AsyncSession, *, webhook_id: uuid.UUID, payload: dict[str, Any]
) -> None:
    """Route an event already stored as received (the events.list catch-up), or hand it to
    routing."""
    route = await find_reservation(session, payload, lock=True)
    if route is None:
        await enqueue_routing(session, webhook_id=webhook_id)
        return
    await route_to(session, webhook_id, route, locked=True)


async def route_to(
    session: AsyncSession, webhook_id: uuid.UUID, route: Route, *, locked: bool = False
) -> None:
    """Route a stored event to its reservation, and enqueue the reservation's events job
    unless one is waiting. `locked`: the caller's `find_reservation(lock=True)` holds the
    reservation's events lock already."""
    if not locked:
        await session.execute(_LOCK_SHARED, {"reservation_id": route.reservation_id})
    await session.execute(
        update(SeamWebhook)
        .where(SeamWebhook.id == webhook_id)
        .values(
            outcome=InboxOutcome.ROUTED.value,
            outcome_reason=None,
            processed_at=utcnow(),
            reservation_id=route.reservation_id,
        )
    )
    await session.execute(_ENQUEUE_EVENTS, _events_job(route))
