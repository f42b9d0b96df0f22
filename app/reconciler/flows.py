"""The reconciler: what webhooks should have told guestkey, asked of Seam directly.

One pass (a procrastinate periodic task, so any number of workers defer it once per minute)
does three things, each bounded:

- reservations whose `next_check_at` is due: a `pending` one gets its sync job again (a
  queueing lock makes that a no-op when one is waiting); a `granted` one is polled
  (`access_methods.list`) in a job under the reservation's lock. The wait before the next look
  doubles each time (from `GUESTKEY_RECONCILE_AFTER` up to 6 hours), so a code that Seam issues
  days before the stay costs a handful of calls, not thousands. Only due rows are read, through
  a partial index: the pass costs what is due, not what is stored.
- `events.list` since a stored cursor: every event not yet in the inbox goes into it and down
  the same path as a webhook (the inbox's unique `event_id` makes a webhook and its polled twin
  one event).
- jobs stuck in `doing` on a worker that stopped sending heartbeats (for
  `GUESTKEY_STALLED_JOB_SECONDS`) are put back to `todo`.

An hourly maintenance task erases what guestkey must not keep: guest contact details and
codes `GUESTKEY_RETENTION` after a stay ended, inbox rows older than 30 days, finished jobs.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.reconciler.models import ReconcilerCursor
from app.reservations.models import Reservation, ReservationStatus
from app.reservations.service import enqueue_sync, reservation_lock
from app.runtime import Runtime
from app.webhooks.events import HANDLED_EVENTS, UNHANDLED
from app.webhooks.models import SeamWebhook
from app.webhooks.service import redact
from app.worker.app import jobs
from app.worker.queue import defer

log = structlog.get_logger(__name__)

BATCH = 200
MAX_WAIT = timedelta(hours=6)
EVENTS_CURSOR = "seam.events"
EVENTS_OVERLAP = timedelta(minutes=2)  # re-read a little: events can be stamped out of order
EVENTS_FIRST_LOOK_BACK = timedelta(hours=1)


def next_wait(runtime: Runtime, check_count: int) -> timedelta:
    first: timedelta = runtime.settings.guestkey_reconcile_after
    wait: timedelta = first * (2 ** min(check_count, 20))
    return min(MAX_WAIT, wait)


async def reconcile(runtime: Runtime) -> dict[str, int]:
    checked = await check_due_reservations(runtime)
    caught_up = await catch_up_events(runtime)
    unstuck = await retry_stalled_jobs(runtime.settings.guestkey_stalled_job_seconds)
    if checked or caught_up or unstuck:
        log.info("reconciler.pass", checked=checked, events=caught_up, stalled_jobs=unstuck)
    return {"checked": checked, "events": caught_up, "stalled_jobs": unstuck}


def due_reservations_query(now: datetime, limit: int = BATCH):  # type: ignore[no-untyped-def]
    return (
        select(Reservation)
        .where(Reservation.next_check_at.is_not(None), Reservation.next_check_at <= now)
        .order_by(Reservation.next_check_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def check_due_reservations(runtime: Runtime) -> int:
    from app.reconciler.tasks import poll_reservation

    now = utcnow()
    async with runtime.sessionmaker() as session:
        due = list(await session.scalars(due_reservations_query(now)))
        for reservation in due:
            if reservation.status == ReservationStatus.PENDING or (
                reservation.status == ReservationStatus.CANCELLED
            ):
                await enqueue_sync(session, reservation_id=reservation.id)
            elif reservation.status == ReservationStatus.GRANTED and reservation.access_grant_id:
                await defer(
                    session,
                    poll_reservation,
                    lock=reservation_lock(reservation.id),
                    queueing_lock=f"reservation-poll:{reservation.id}",
                    reservation_id=str(reservation.id),
                )
            else:
                reservation.next_check_at = None
                continue
            reservation.next_check_at = now + next_wait(runtime, reservation.check_count)
            reservation.check_count += 1
        await session.commit()
    return len(due)


async def poll_reservation(runtime: Runtime, *, reservation_id: uuid.UUID) -> None:
    """Ask Seam for the grant's access methods; an issued one is handled as if notified."""
    from app.reservations.codes import refresh_access_method

    async with runtime.sessionmaker() as session:
        reservation = await session.get(Reservation, reservation_id)
        if reservation is None or reservation.access_grant_id is None:
            return
        if reservation.status != ReservationStatus.GRANTED:
            return
        grant_id = reservation.access_grant_id
    for method in await runtime.seam.list_access_methods(grant_id):
        if method.is_issued:
            log.info("reconciler.issued_without_webhook", reservation_id=str(reservation_id))
            await refresh_access_method(
                runtime,
                reservation_id=reservation_id,
                access_method_id=method.access_method_id,
                access_grant_ids=[grant_id],
                seam_event="found by the reconciler",
            )


async def _cursor(session: AsyncSession) -> datetime:
    position = await session.scalar(
        select(ReconcilerCursor.position).where(ReconcilerCursor.name == EVENTS_CURSOR)
    )
    return position or utcnow() - EVENTS_FIRST_LOOK_BACK


async def catch_up_events(runtime: Runtime, *, max_pages: int = 5) -> int:
    from app.webhooks.service import enqueue_stored

    stored = 0
    async with runtime.sessionmaker() as session:
        since = await _cursor(session) - EVENTS_OVERLAP
        newest = since
        for _ in range(max_pages):
            events = await runtime.seam.list_events(since=since, limit=500)
            for event in events:
                event_id, created_at = event.get("event_id"), event.get("created_at")
                if not isinstance(event_id, str) or not isinstance(created_at, str):
                    continue
                newest = max(newest, datetime.fromisoformat(created_at))
                handled = event.get("event_type") in HANDLED_EVENTS
                inserted = await session.scalar(
                    insert(SeamWebhook)
                    .values(
                        id=uuid.uuid4(),
                        svix_id=f"events.list:{event_id}",
                        event_id=event_id,
                        event_type=event.get("event_type"),
                        payload=redact(event),
                        outcome="received" if handled else "ignored",
                        outcome_reason=None if handled else UNHANDLED,
                        processed_at=None if handled else utcnow(),
                    )
                    .on_conflict_do_nothing()
                    .returning(SeamWebhook.id)
                )
                if inserted is not None and handled:
                    await enqueue_stored(session, webhook_id=inserted, payload=event)
                if inserted is not None:
                    stored += 1
            if len(events) < 500:
                break
            since = newest
        await session.execute(
            insert(ReconcilerCursor)
            .values(name=EVENTS_CURSOR, position=newest + EVENTS_OVERLAP)
            .on_conflict_do_update(
                index_elements=["name"], set_={"position": newest + EVENTS_OVERLAP}
            )
        )
        await session.commit()
    if stored:
        log.info("reconciler.events_caught_up", count=stored)
    return stored


async def retry_stalled_jobs(seconds_since_heartbeat: float = 60.0) -> int:
    stalled = list(
        await jobs.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
    )
    for job in stalled:
        await jobs.job_manager.retry_job(job)
        log.warning("reconciler.stalled_job_retried", task=job.task_name, job_id=job.id)
    return len(stalled)


INBOX_RETENTION = timedelta(days=30)  # longer than Svix retries (about 28 hours) by far
FINISHED_JOBS_RETENTION_HOURS = 72


async def purge_expired(runtime: Runtime, *, now: datetime | None = None) -> dict[str, int]:
    """Erase guests' contact details and codes after the retention period; prune the inbox
    and finished jobs. Each step is one statement, bounded by an indexed condition."""
    from app.delivery.models import Delivery
    from app.reservations.models import AccessMethod, ReservationEvent

    now = now or utcnow()
    cutoff = now - runtime.settings.guestkey_retention
    async with runtime.sessionmaker() as session:
        expired = select(Reservation.id).where(
            Reservation.ends_at < cutoff, Reservation.purged_at.is_(None)
        )
        ids = list(await session.scalars(expired.limit(1000)))
        if ids:
            await session.execute(
                update(Reservation)
                .where(Reservation.id.in_(ids))
                .values(guest_name="(erased)", guest_email=None, guest_phone=None, purged_at=now)
            )
            await session.execute(
                update(AccessMethod)
                .where(AccessMethod.reservation_id.in_(ids))
                .values(code_ciphertext=None)
            )
            await session.execute(
                update(Delivery)
                .where(Delivery.reservation_id.in_(ids))
                .values(recipient="(erased)")
            )
            await session.execute(
                update(ReservationEvent)
                .where(
                    ReservationEvent.reservation_id.in_(ids), ReservationEvent.detail.has_key("to")
                )
                .values(detail=ReservationEvent.detail.op("-")(literal("to")))
            )
        pruned = await session.execute(
            delete(SeamWebhook).where(SeamWebhook.received_at < now - INBOX_RETENTION)
        )
        await session.commit()
    await jobs.job_manager.delete_old_jobs(nb_hours=FINISHED_JOBS_RETENTION_HOURS)
    counts = {
        "reservations_erased": len(ids),
        "webhooks_pruned": int(pruned.rowcount),  # type: ignore[attr-defined]
    }
    if any(counts.values()):
        log.info("maintenance.purged", **counts)
    return counts
