"""From a stored Seam event to its effect on a reservation.

Routing (`route_seam_event`) only reads guestkey's own tables; the work itself
(`apply_seam_events`, one job for all the events routed to a reservation) runs under the
reservation's job lock, so it never overlaps the reservation's sync. Events are hints:
whatever they say, state is re-read from Seam.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any, NamedTuple

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.reservations import codes, doors
from app.reservations.flows import to_second
from app.reservations.models import (
    AccessMethod,
    CodeState,
    DoorState,
    Reservation,
    ReservationStatus,
)
from app.reservations.service import enqueue_sync
from app.runtime import Runtime
from app.timeline import TimelineKind, record_event
from app.webhooks.events import ACCESS_METHOD_CODE_EVENTS, HANDLED_EVENTS, UNHANDLED
from app.webhooks.models import InboxOutcome, SeamWebhook
from app.webhooks.service import LOCK_EVENTS, find_reservation, finish, route_to, strings
from app.worker.retry import TRANSIENT_ERRORS, RetryLater

log = structlog.get_logger(__name__)

# An event for a grant guestkey has not stored yet may be early (Seam can send it before
# our create call returns): it is retried this long before it counts as not ours.
ROUTING_PATIENCE = timedelta(minutes=15)


class EventNotYetRoutable(RetryLater):
    pass


async def route_seam_event(runtime: Runtime, *, webhook_id: uuid.UUID) -> None:
    async with runtime.sessionmaker() as session:
        webhook = await session.get(SeamWebhook, webhook_id)
        if webhook is None or webhook.outcome != InboxOutcome.RECEIVED or webhook.payload is None:
            return
        event_type = webhook.event_type or ""
        if event_type not in HANDLED_EVENTS:
            await finish(session, webhook_id, InboxOutcome.IGNORED, UNHANDLED)
            await session.commit()
            return
        found = await find_reservation(session, webhook.payload)
        if found is None:
            if utcnow() - webhook.received_at < ROUTING_PATIENCE:
                raise EventNotYetRoutable(f"no reservation (yet) for {event_type}")
            await finish(session, webhook_id, InboxOutcome.IGNORED, "not a guestkey grant")
            await session.commit()
            return
        await route_to(session, webhook_id, found)
        await session.commit()


async def apply_seam_events(
    runtime: Runtime, *, reservation_id: uuid.UUID, webhook_id: uuid.UUID | None = None
) -> None:
    """Apply every event routed to the reservation, in the order they were received: runs of
    events that need no Seam call in one transaction each; a code event re-reads the code
    from Seam (and sends it, see `codes.refresh_access_method`). `webhook_id`: a job enqueued
    for one event, before events named their reservation."""
    async with runtime.sessionmaker() as session:
        if webhook_id is not None:
            await session.execute(
                update(SeamWebhook)
                .where(
                    SeamWebhook.id == webhook_id,
                    SeamWebhook.outcome == InboxOutcome.ROUTED.value,
                    SeamWebhook.reservation_id.is_(None),
                )
                .values(reservation_id=reservation_id)
            )
        await session.execute(LOCK_EVENTS, {"reservation_id": reservation_id})
        events = (
            await session.execute(
                select(SeamWebhook.id, SeamWebhook.event_type, SeamWebhook.payload)
                .where(
                    SeamWebhook.reservation_id == reservation_id,
                    SeamWebhook.outcome == InboxOutcome.ROUTED.value,
                )
                .order_by(SeamWebhook.received_at, SeamWebhook.id)
            )
        ).all()
        runs = [
            (asks_seam, [Event(*event) for event in run])
            for asks_seam, run in itertools.groupby(events, key=lambda e: _asks_seam(e[1], e[2]))
        ]
        if runs and not runs[0][0]:
            # The first run is applied in the transaction that read the events.
            first = runs.pop(0)[1]
            try:
                await _record_seam_events(session, reservation_id, first)
            except TRANSIENT_ERRORS:
                raise
            except Exception:
                await session.rollback()
                runs.insert(0, (False, first))  # again, one event at a time
        await session.commit()
    for asks_seam, run in runs:
        if not asks_seam:
            await _apply_run(runtime, reservation_id, run)
            continue
        for event in run:
            try:
                await _refresh_code(runtime, reservation_id, event)
            except TRANSIENT_ERRORS:
                raise
            except Exception:
                await _set_aside(runtime, reservation_id, event)


async def _apply_run(runtime: Runtime, reservation_id: uuid.UUID, run: list[Event]) -> None:
    """A run of events that need no Seam call, in one transaction; should one of them fail
    for a reason no retry mends, each on its own, so one bad event holds up no other."""
    try:
        async with runtime.sessionmaker() as session:
            await _record_seam_events(session, reservation_id, run)
            await session.commit()
    except TRANSIENT_ERRORS:
        raise
    except Exception:
        if len(run) == 1:
            await _set_aside(runtime, reservation_id, run[0])
            return
        for event in run:
            await _apply_run(runtime, reservation_id, [event])


async def _set_aside(runtime: Runtime, reservation_id: uuid.UUID, event: Event) -> None:
    """An event guestkey could not apply (a bug, or Seam refusing for good): logged with its
    traceback, and kept in the inbox as ignored with the reason, so the reservation's later
    events still go through."""
    log.exception(
        "webhooks.seam.apply_failed",
        event_type=event.event_type,
        reservation_id=str(reservation_id),
        webhook_id=str(event.id),
    )
    async with runtime.sessionmaker() as session:
        await finish(session, event.id, InboxOutcome.IGNORED, "could not be applied (see the log)")
        await session.commit()


class Event(NamedTuple):
    id: uuid.UUID
    event_type: str | None
    payload: dict[str, Any] | None


def _asks_seam(event_type: str | None, payload: dict[str, Any] | None) -> bool:
    return event_type in ACCESS_METHOD_CODE_EVENTS and isinstance(
        (payload or {}).get("access_method_id"), str
    )


async def _refresh_code(runtime: Runtime, reservation_id: uuid.UUID, event: Event) -> None:
    """A code event: re-read the code from Seam; the event is done with the code stored."""
    payload = event.payload or {}
    log.info("webhooks.seam.apply", event_type=event.event_type, reservation_id=str(reservation_id))
    finished = await codes.refresh_access_method(
        runtime,
        reservation_id=reservation_id,
        access_method_id=payload["access_method_id"],
        access_grant_ids=strings(payload.get("access_grant_id"), payload.get("access_grant_ids")),
        seam_event=event.event_type,
        webhook_id=event.id,
        send_now=True,
    )
    if not finished:  # no code stored with it
        async with runtime.sessionmaker() as session:
            await finish(session, event.id, InboxOutcome.PROCESSED)
            await session.commit()


def _detail(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        key: payload[key]
        for key in ("access_method_id", "access_grant_id", "acs_entrance_id", "device_id")
        if key in payload
    }


async def _record_seam_events(
    session: AsyncSession, reservation_id: uuid.UUID, events: list[Event]
) -> None:
    """Events that change what guestkey shows, not what it sends: each one's record, and
    their outcome, in the caller's transaction."""
    reservation = await session.get(Reservation, reservation_id, with_for_update=True)
    assert reservation is not None
    for event in events:
        event_type = event.event_type or ""
        log.info("webhooks.seam.apply", event_type=event_type, reservation_id=str(reservation_id))
        handler = _HANDLERS.get(event_type, _method_problem)
        if event_type in ACCESS_METHOD_CODE_EVENTS:
            handler = _no_code_named  # a code event naming no access method
        await handler(session, reservation, event_type, event.payload or {})
    await session.execute(
        update(SeamWebhook)
        .where(SeamWebhook.id.in_([event.id for event in events]))
        .values(outcome=InboxOutcome.PROCESSED.value, outcome_reason=None, processed_at=utcnow())
    )


async def _no_code_named(
    session: AsyncSession, reservation: Reservation, event_type: str, payload: dict[str, Any]
) -> None:
    """Nothing to re-read: the reconciler's next pass asks Seam about the stay anyway."""


async def _method_removed(
    session: AsyncSession, reservation: Reservation, event_type: str, payload: dict[str, Any]
) -> None:
    method = await session.scalar(
        select(AccessMethod).where(
            AccessMethod.access_method_id == payload.get("access_method_id"),
            AccessMethod.reservation_id == reservation.id,
        )
    )
    # guestkey's own doing when it had already let the code go (replaced or cancelled)
    by_us = method is None or method.state != CodeState.CURRENT
    if method is not None and method.state == CodeState.CURRENT:
        method.state = CodeState.REVOKED.value
        method.removed_at = utcnow()
    kind = (
        TimelineKind.ACCESS_METHOD_REVOKED
        if event_type == "access_method.revoked"
        else TimelineKind.ACCESS_METHOD_DELETED
    )
    await record_event(
        session,
        reservation_id=reservation.id,
        kind=kind,
        reason="by guestkey" if by_us else "at Seam, not by guestkey",
        **_detail(payload),
    )


async def _grant_deleted(
    session: AsyncSession, reservation: Reservation, event_type: str, payload: dict[str, Any]
) -> None:
    deleted = payload.get("access_grant_id")
    by_us = deleted != reservation.access_grant_id
    if by_us:
        return  # guestkey deleted it (cancelled, or replaced): its own entry says so
    if reservation.status != ReservationStatus.CANCELLED:
        reservation.last_error = "the Seam access grant was deleted outside guestkey"
        reservation.access_grant_id = None
        reservation.updated_at = utcnow()
    await record_event(
        session,
        reservation_id=reservation.id,
        kind=TimelineKind.GRANT_DELETED,
        reason="at Seam, not by guestkey",
        **_detail(payload),
    )


async def _times_changed(
    session: AsyncSession, reservation: Reservation, event_type: str, payload: dict[str, Any]
) -> None:
    """The booking system owns the times (DESIGN.md §9.3): when Seam's differ from the
    reservation's, the sync sets Seam's back; the reservation's times never change here. A
    late or redelivered event of guestkey's own earlier update costs one idempotent update."""
    if payload.get("access_grant_id") != reservation.access_grant_id:
        return
    seam_window = {
        "starts_at": to_second(payload.get("starts_at")),
        "ends_at": to_second(payload.get("ends_at")),
    }
    wanted = {
        "starts_at": to_second(reservation.starts_at),
        "ends_at": to_second(reservation.ends_at),
    }
    if None in seam_window.values() or seam_window == wanted:
        return  # guestkey's own change arriving: nothing differs
    reservation.granted = {**(reservation.granted or {}), **seam_window}
    await record_event(
        session,
        reservation_id=reservation.id,
        kind=TimelineKind.TIMES_CHANGED_AT_SEAM,
        reason="Seam's times differ from the booking's; guestkey sets them back",
        **{f"seam_{name}": value for name, value in seam_window.items()},
    )
    if reservation.status not in (ReservationStatus.CANCELLED, ReservationStatus.FAILED):
        await enqueue_sync(session, reservation_id=reservation.id)


async def _door_changed(
    session: AsyncSession, reservation: Reservation, event_type: str, payload: dict[str, Any]
) -> None:
    entrance_id, device_id = payload.get("acs_entrance_id"), payload.get("device_id")
    door_id = entrance_id or device_id
    if not isinstance(door_id, str) or payload.get("access_grant_id") != (
        reservation.access_grant_id
    ):
        return
    granted = event_type == "access_grant.access_granted_to_door"
    await doors.set_door_state(
        session,
        reservation_id=reservation.id,
        door_type="acs_entrance" if entrance_id else "device",
        door_id=door_id,
        state=DoorState.GRANTED if granted else DoorState.LOST,
        reason=None if granted else "Seam reports the code no longer opens this door",
    )
    await record_event(
        session,
        reservation_id=reservation.id,
        kind=TimelineKind.DOOR_GRANTED if granted else TimelineKind.DOOR_LOST,
        **_detail(payload),
    )


async def _missing_codes(
    session: AsyncSession, reservation: Reservation, event_type: str, payload: dict[str, Any]
) -> None:
    """Partial success is partial: the doors Seam names lose their code; the reservation
    fails only when none of its doors can be opened. Seam's event may name no door (its
    `missing_device_ids` is optional, and it has no field for entrances). It means one or
    more doors, so a stay of one lock or entrance, not granted yet, has lost its only door;
    with more doors it is a warning, and the doors the code opens are what Seam's
    `get_related` says when the code is issued."""
    if payload.get("access_grant_id") != reservation.access_grant_id:
        return
    message = f"Seam could not create the PIN code: {payload.get('error_message') or 'unknown'}"
    missing = strings(payload.get("missing_device_ids")) or await doors.the_only_door_unserved(
        session, reservation_id=reservation.id
    )
    problems = [
        doors.DoorProblem(door_id, DoorState.FAILED, doors.MISSING_CODES, message)
        for door_id in missing
    ]
    await doors.mark_doors(session, reservation_id=reservation.id, problems=problems)
    reservation.warnings = doors.merge_warnings(
        reservation.warnings,
        [doors.make_warning(doors.MISSING_CODES, message, door_id) for door_id in missing]
        or [doors.make_warning(doors.MISSING_CODES, message)],
    )
    reservation.updated_at = utcnow()
    hopeless = bool(missing) and await doors.none_can_open(session, reservation_id=reservation.id)
    if hopeless and reservation.status not in (
        ReservationStatus.CANCELLED,
        ReservationStatus.FAILED,
    ):
        reservation.status = ReservationStatus.FAILED.value
        reservation.last_error = message
        reservation.next_check_at = None
        await record_event(
            session, reservation_id=reservation.id, kind=TimelineKind.FAILED, reason=message
        )


async def _method_problem(
    session: AsyncSession, reservation: Reservation, event_type: str, payload: dict[str, Any]
) -> None:
    """`delay_in_issuing`, `failed_to_issue`: visible to the booking system as warnings until
    a code is issued."""
    kind = event_type.split(".", 1)[1]
    message = str(payload.get("error_message") or kind.replace("_", " "))
    reservation.warnings = doors.merge_warnings(
        reservation.warnings, [doors.make_warning(kind, message)]
    )
    reservation.updated_at = utcnow()
    await record_event(
        session,
        reservation_id=reservation.id,
        kind=TimelineKind(f"access_method_{kind}"),
        reason=message,
        **_detail(payload),
    )


_HANDLERS = {
    "access_method.revoked": _method_removed,
    "access_method.deleted": _method_removed,
    "access_grant.deleted": _grant_deleted,
    "access_grant.access_times_changed": _times_changed,
    "access_grant.access_granted_to_door": _door_changed,
    "access_grant.access_to_door_lost": _door_changed,
    "access_grant.could_not_create_requested_access_methods": _missing_codes,
    "access_method.delay_in_issuing": _method_problem,
    "access_method.failed_to_issue": _method_problem,
}
