"""The inbox: store each verified delivery once and enqueue its processing with it."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import structlog
from sqlalchemy import Table, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
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


async def store_delivery(session: AsyncSession, *, svix_id: str, body: bytes) -> Intake:
    payload, problem = parse_event(body)
    row: dict[str, Any] = {"id": uuid.uuid4(), "svix_id": svix_id}
    handled = door_event = False
    route = None
    if problem is None:
        assert payload is not None
        handled = payload["event_type"] in HANDLED_EVENTS
        door_event = payload["event_type"] in DOOR_EVENTS
        if handled:
            route = await find_reservation(session, payload)
        row |= {
            "event_id": payload["event_id"],
            "event_type": payload["event_type"],
            "payload": redact(payload),
            "outcome": (
                InboxOutcome.PROCESSED  # by the door list's refresh, enqueued below
                if door_event
                else (InboxOutcome.ROUTED if route else InboxOutcome.RECEIVED)
                if handled
                else InboxOutcome.IGNORED
            ).value,
            "outcome_reason": None if handled or door_event else UNHANDLED,
            "processed_at": None if handled and route is None else utcnow(),
        }
    else:
        row |= {
            "event_id": None,
            "event_type": None,
            # A body that is not a Seam event may hold anything: its digest and length only.
            "payload": None,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_length": len(body),
            "outcome": InboxOutcome.REJECTED.value,
            "outcome_reason": problem,
            "processed_at": utcnow(),
        }
    inserted = await session.scalar(_INSERT, row)
    if inserted is None:
        return Intake("duplicate")
    if problem is not None:
        log.error("webhooks.seam.rejected", svix_id=svix_id, reason=problem)
        return Intake("rejected", problem)
    if door_event:
        await enqueue_door_refresh(session)
        return Intake("accepted")
    if not handled:
        return Intake("ignored")  # stored for the record; no job, nothing to do

    await enqueue_handling(session, webhook_id=inserted, route=route)
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


async def find_reservation(session: AsyncSession, payload: dict[str, Any]) -> Route | None:
    """By our grant key, the access method id, or the grant id(s) the event names."""
    keys = strings(payload.get("access_grant_key"), payload.get("access_grant_keys"))
    if keys:
        row = (
            await session.execute(
                select(Reservation.id, Reservation.access_grant_id.is_not(None))
                .where(Reservation.access_grant_key.in_(keys))
                .limit(1)
            )
        ).first()
        if row is not None:
            return Route(row[0], bool(row[1]))
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


async def enqueue_handling(
    session: AsyncSession, *, webhook_id: uuid.UUID, route: Route | None
) -> None:
    """Enqueue the work for a stored, handled event, in the caller's transaction: straight
    to the reservation's queue when intake found whose it is (`find_reservation`, one
    indexed read; the event is then stored as routed), else to routing, which retries while
    the grant may still be on its way."""
    if route is None:
        from app.webhooks.tasks import process_seam_event  # tasks import this module

        await defer(session, process_seam_event, webhook_id=str(webhook_id))
        return
    await _defer_apply(session, webhook_id, route)


async def enqueue_stored(
    session: AsyncSession, *, webhook_id: uuid.UUID, payload: dict[str, Any]
) -> None:
    """`enqueue_handling` for an event already stored as received (the events.list catch-up)."""
    route = await find_reservation(session, payload)
    if route is None:
        await enqueue_handling(session, webhook_id=webhook_id, route=None)
        return
    await route_to(session, webhook_id, route)


async def route_to(session: AsyncSession, webhook_id: uuid.UUID, route: Route) -> None:
    await finish(session, webhook_id, InboxOutcome.ROUTED)
    await _defer_apply(session, webhook_id, route)


async def _defer_apply(session: AsyncSession, webhook_id: uuid.UUID, route: Route) -> None:
    """Hand the event to its reservation's queue. Until guestkey has stored the grant, the
    event waits for the reservation's first sync, so it must not outrank that sync: a waiting
    job of higher priority holds back every job of lower priority under the same lock."""
    from app.webhooks.tasks import apply_seam_event as apply_task  # tasks import this module

    await defer(
        session,
        apply_task,
        lock=reservation_lock(route.reservation_id),
        priority=None if route.granted else Priority.NEW_STAY,
        reservation_id=str(route.reservation_id),
        webhook_id=str(webhook_id),
    )
