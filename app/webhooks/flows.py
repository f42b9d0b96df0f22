"""From a stored Seam event to its effect on a reservation.

Routing (`route_seam_event`) only reads guestkey's own tables; the work itself
(`apply_seam_event`) runs under the reservation's job lock, so it never overlaps the
reservation's sync. Events are hints: whatever they say, state is re-read from Seam.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.reservations import flows as reservation_flows
from app.reservations.models import AccessMethod, Reservation, ReservationDoor, ReservationStatus
from app.reservations.service import record_event, reservation_lock
from app.runtime import Runtime
from app.webhooks.events import ACCESS_METHOD_CODE_EVENTS, HANDLED_EVENTS, UNHANDLED
from app.webhooks.models import SeamWebhook
from app.worker.queue import Priority, defer
from app.worker.retry import RetryLater

log = structlog.get_logger(__name__)

# An event for a grant guestkey has not stored yet may be early (Seam can send it before
# our create call returns): it is retried this long before it counts as not ours.
ROUTING_PATIENCE = timedelta(minutes=15)


class EventNotYetRoutable(RetryLater):
    pass


def _strings(*values: Any) -> list[str]:
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
    keys = _strings(payload.get("access_grant_key"), payload.get("access_grant_keys"))
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
    method_ids = _strings(payload.get("access_method_id"))
    grant_ids = _strings(payload.get("access_grant_id"), payload.get("access_grant_ids"))
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


async def _finish(
    session: AsyncSession, webhook_id: uuid.UUID, outcome: str, reason: str | None = None
) -> None:
    await session.execute(
        update(SeamWebhook)
        .where(SeamWebhook.id == webhook_id)
        .values(outcome=outcome, outcome_reason=reason, processed_at=utcnow())
    )


async def enqueue_handling(
    session: AsyncSession, *, webhook_id: uuid.UUID, route: Route | None
) -> None:
    """Enqueue the work for a stored, handled event, in the caller's transaction: straight
    to the reservation's queue when intake found whose it is (`find_reservation`, one
    indexed read; the event is then stored as routed), else to routing, which retries while
    the grant may still be on its way."""
    if route is None:
        from app.webhooks.tasks import process_seam_event

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
    await _route(session, webhook_id, route)


async def _route(session: AsyncSession, webhook_id: uuid.UUID, route: Route) -> None:
    await _finish(session, webhook_id, "routed")
    await _defer_apply(session, webhook_id, route)


async def _defer_apply(session: AsyncSession, webhook_id: uuid.UUID, route: Route) -> None:
    """Hand the event to its reservation's queue. Until guestkey has stored the grant, the
    event waits for the reservation's first sync, so it must not outrank that sync: a waiting
    job of higher priority holds back every job of lower priority under the same lock."""
    from app.webhooks.tasks import apply_seam_event as apply_task

    await defer(
        session,
        apply_task,
        lock=reservation_lock(route.reservation_id),
        priority=None if route.granted else Priority.NEW_STAY,
        reservation_id=str(route.reservation_id),
        webhook_id=str(webhook_id),
    )


async def route_seam_event(runtime: Runtime, *, webhook_id: uuid.UUID) -> None:
    async with runtime.sessionmaker() as session:
        webhook = await session.get(SeamWebhook, webhook_id)
        if webhook is None or webhook.outcome != "received" or webhook.payload is None:
            return
        event_type = webhook.event_type or ""
        if event_type not in HANDLED_EVENTS:
            await _finish(session, webhook_id, "ignored", UNHANDLED)
            await session.commit()
            return
        route = await find_reservation(session, webhook.payload)
        if route is None:
            if utcnow() - webhook.received_at < ROUTING_PATIENCE:
                raise EventNotYetRoutable(f"no reservation (yet) for {event_type}")
            await _finish(session, webhook_id, "ignored", "not a guestkey grant")
            await session.commit()
            return
        await _route(session, webhook_id, route)
        await session.commit()


async def apply_seam_event(
    runtime: Runtime, *, reservation_id: uuid.UUID, webhook_id: uuid.UUID
) -> None:
    async with runtime.sessionmaker() as session:
        webhook = await session.get(SeamWebhook, webhook_id)
        if webhook is None or webhook.payload is None:
            return
        payload, event_type = webhook.payload, webhook.event_type or ""
        log.info("webhooks.seam.apply", event_type=event_type, reservation_id=str(reservation_id))
        access_method_id = payload.get("access_method_id")
        code_event = event_type in ACCESS_METHOD_CODE_EVENTS and isinstance(access_method_id, str)
        if not code_event:
            # Nothing to ask Seam: the record and the event's outcome in one transaction.
            await _record_seam_event(session, reservation_id, event_type, payload)
            await _finish(session, webhook_id, "processed")
            await session.commit()
            return

    if isinstance(access_method_id, str):  # a code event: re-read the code from Seam
        grant_ids = _strings(payload.get("access_grant_id"), payload.get("access_grant_ids"))
        await reservation_flows.refresh_access_method(
            runtime,
            reservation_id=reservation_id,
            access_method_id=access_method_id,
            access_grant_id=grant_ids[0] if grant_ids else None,
            backup_code=bool(payload.get("is_backup_code")),
            seam_event=event_type,
        )
    async with runtime.sessionmaker() as session:
        await _finish(session, webhook_id, "processed")
        await session.commit()


async def _record_seam_event(
    session: AsyncSession, reservation_id: uuid.UUID, event_type: str, payload: dict[str, Any]
) -> None:
    """Events that change what guestkey shows, not what it sends."""
    reservation = await session.get(Reservation, reservation_id, with_for_update=True)
    assert reservation is not None
    kind = event_type.split(".", 1)[1]
    detail = {
        key: payload[key]
        for key in ("access_method_id", "access_grant_id", "acs_entrance_id", "device_id")
        if key in payload
    }
    if event_type in ("access_method.revoked", "access_method.deleted"):
        method = await session.scalar(
            select(AccessMethod).where(
                AccessMethod.access_method_id == payload.get("access_method_id")
            )
        )
        ours = method is None or method.removed_at is not None
        if method is not None and method.removed_at is None:
            method.removed_at = utcnow()
        await record_event(
            session,
            reservation_id=reservation_id,
            kind=f"access_method_{kind}",
            reason="by guestkey" if ours else "at Seam, not by guestkey",
            **detail,
        )
    elif event_type == "access_grant.deleted":
        by_us = reservation.access_grant_id != payload.get("access_grant_id")
        if not by_us and reservation.status != ReservationStatus.CANCELLED:
            reservation.last_error = "the Seam access grant was deleted outside guestkey"
            reservation.access_grant_id = None
            reservation.updated_at = utcnow()
        await record_event(
            session,
            reservation_id=reservation_id,
            kind="grant_deleted",
            reason="by guestkey" if by_us else "at Seam, not by guestkey",
            **detail,
        )
    elif event_type == "access_grant.access_times_changed":
        starts_at, ends_at = payload.get("starts_at"), payload.get("ends_at")
        if starts_at and ends_at:
            new_start, new_end = datetime.fromisoformat(starts_at), datetime.fromisoformat(ends_at)
            if new_end > new_start:
                reservation.starts_at, reservation.ends_at = new_start, new_end
                reservation.granted = {
                    **(reservation.granted or {}),
                    "starts_at": new_start.isoformat(),
                    "ends_at": new_end.isoformat(),
                }
                reservation.updated_at = utcnow()
        await record_event(
            session,
            reservation_id=reservation_id,
            kind="times_changed_at_seam",
            starts_at=starts_at,
            ends_at=ends_at,
        )
    elif event_type in ("access_grant.access_granted_to_door", "access_grant.access_to_door_lost"):
        door_id = payload.get("acs_entrance_id") or payload.get("device_id")
        state = "granted" if kind == "access_granted_to_door" else "lost"
        await session.execute(
            update(ReservationDoor)
            .where(
                ReservationDoor.reservation_id == reservation_id, ReservationDoor.door_id == door_id
            )
            .values(state=state)
        )
        await record_event(session, reservation_id=reservation_id, kind=f"door_{state}", **detail)
    elif event_type == "access_grant.could_not_create_requested_access_methods":
        missing = payload.get("missing_device_ids") or []
        reason = f"Seam could not create the PIN code: {payload.get('error_message') or 'unknown'}"
        if missing:
            reason += f" (devices: {', '.join(missing)})"
        if reservation.status != ReservationStatus.CANCELLED:
            reservation.status = ReservationStatus.FAILED.value
            reservation.last_error = reason
            reservation.updated_at = utcnow()
        await record_event(session, reservation_id=reservation_id, kind="failed", reason=reason)
    else:  # delay_in_issuing, failed_to_issue
        await record_event(
            session,
            reservation_id=reservation_id,
            kind=f"access_method_{kind}",
            reason=payload.get("error_message") or kind.replace("_", " "),
            **detail,
        )
