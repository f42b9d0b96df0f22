"""The reconciler: what webhooks should have told guestkey, asked of Seam directly.

One pass (a procrastinate periodic task, so any number of workers defer it once per minute)
does three things, each bounded, each on its own: one failing (Seam down, say) is logged and
the others still run.

- reservations whose `next_check_at` is due: a `pending` one gets its sync job again (a
  queueing lock makes that a no-op when one is waiting); a `granted` one is polled
  (`access_methods.list`) in a job under the reservation's lock. The wait before the next look
  doubles each time (from `GUESTKEY_RECONCILE_AFTER` up to 6 hours), so a code that Seam issues
  days before the stay costs a handful of calls, not thousands. Only due rows are read, through
  a partial index: the pass costs what is due, not what is stored.
- `events.list` catch-up of the event types guestkey acts on: from the stored cursor (the
  newest `created_at` seen) minus an overlap, in time windows that are split in two whenever
  Seam answers a full page, so no event is skipped whatever order Seam answers in. Every event
  not yet in the inbox goes into it and down the same path as a webhook (the inbox's unique
  `event_id` makes a webhook, its polled twin and the overlap's re-reads one event).
- jobs stuck in `doing` on a worker that stopped sending heartbeats (for
  `GUESTKEY_STALLED_JOB_SECONDS`) are put back to `todo`. This also runs every 10 seconds on
  its own (`recover_stalled_jobs`), so the work of a dead process resumes within 45 seconds.

An hourly maintenance task erases what guestkey must not keep: guest contact details and
codes `GUESTKEY_RETENTION` after a stay ended, inbox rows older than 30 days, finished jobs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from procrastinate.exceptions import ConnectorException
from sqlalchemy import Text, cast, delete, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.doors.service import enqueue_refresh as enqueue_door_refresh
from app.reconciler.models import ReconcilerCursor
from app.reservations.models import Reservation, ReservationStatus
from app.reservations.service import enqueue_sync, reservation_lock
from app.retention.service import erase_at_seam_later, erase_outbox_files, guests_to_erase
from app.runtime import Runtime
from app.webhooks.events import ACTED_ON_EVENTS, DOOR_EVENTS, HANDLED_EVENTS, UNHANDLED
from app.webhooks.models import InboxOutcome, SeamWebhook
from app.webhooks.service import redact
from app.worker.app import jobs, release_queueing_lock
from app.worker.queue import defer
from app.worker.retry import TRANSIENT_ERRORS

log = structlog.get_logger(__name__)

BATCH = 200
MAX_WAIT = timedelta(hours=6)
EVENTS_CURSOR = "seam.events"
# Re-read this much before the newest event seen: Seam can make an event visible a little
# after another one stamped later. Re-reading costs nothing (the inbox keeps one of each).
EVENTS_OVERLAP = timedelta(minutes=2)
EVENTS_FIRST_LOOK_BACK = timedelta(hours=1)
# The window ends a little ahead of our clock: Seam's may run ahead of it.
EVENTS_AHEAD = timedelta(minutes=1)
EVENTS_PAGE_SIZE = 500
EVENTS_CALLS_PER_PASS = 40  # the rest waits for the next pass: the cursor only passes what was read
MILLISECOND = timedelta(milliseconds=1)


def next_wait(runtime: Runtime, check_count: int) -> timedelta:
    first: timedelta = runtime.settings.guestkey_reconcile_after
    wait: timedelta = first * (2 ** min(check_count, 20))
    return min(MAX_WAIT, wait)


async def reconcile(runtime: Runtime) -> dict[str, int]:
    steps: dict[str, Callable[[], Awaitable[int]]] = {
        "checked": lambda: check_due_reservations(runtime),
        "events": lambda: catch_up_events(runtime),
        "stalled_jobs": lambda: retry_stalled_jobs(runtime.settings.guestkey_stalled_job_seconds),
    }
    results: dict[str, int] = {}
    for name, step in steps.items():
        results[name] = await _isolated(name, step)
    if any(results.values()):
        log.info("reconciler.pass", **results)
    return results


async def _isolated(name: str, step: Callable[[], Awaitable[int]]) -> int:
    """Run one step of the pass; a failure is logged and counts 0, and the pass goes on.
    An outage is one warning line; anything else is a bug and keeps its traceback."""
    try:
        return await step()
    except TRANSIENT_ERRORS as error:
        log.warning("reconciler.step_failed", step=name, error=f"{type(error).__name__}: {error}")
    except Exception:
        log.exception("reconciler.step_failed", step=name)
    return 0


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


class EventWindows:
    """Reads every event of `(after, before)` with as few calls as it can.

    A page shorter than the limit is the whole window. A full one says nothing about what is
    missing (Seam documents no order), so the window is split in two and each half read again,
    the older first; a full page in a window too narrow to split is paged by offset. Windows
    are finished oldest first, so when the call budget runs out everything up to
    `newest_read` has been read."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        page_size: int = EVENTS_PAGE_SIZE,
        max_calls: int = EVENTS_CALLS_PER_PASS,
    ) -> None:
        self.seam = runtime.seam
        self.page_size = page_size
        self.calls_left = max_calls
        self.events: dict[str, dict[str, Any]] = {}
        self.newest_read: datetime | None = None  # newest `created_at` of finished windows

    async def _page(self, after: datetime, before: datetime, offset: int = 0) -> list[Any]:
        self.calls_left -= 1
        return await self.seam.list_events(
            after=after,
            before=before,
            event_types=ACTED_ON_EVENTS,
            limit=self.page_size,
            offset=offset or None,
        )

    def _keep(self, page: list[dict[str, Any]]) -> list[datetime]:
        stamps = []
        for event in page:
            event_id, created_at = event.get("event_id"), event.get("created_at")
            if not isinstance(event_id, str) or not isinstance(created_at, str):
                continue
            self.events[event_id] = event
            stamps.append(datetime.fromisoformat(created_at))
        return stamps

    def _finished(self, stamps: list[datetime]) -> None:
        if stamps:
            newest = max(stamps)
            self.newest_read = max(newest, self.newest_read or newest)

    async def read(self, after: datetime, before: datetime) -> bool:
        """True when the whole interval was read, False when the call budget ran out."""
        windows = [(after, before)]  # a stack: the older half is pushed last, read first
        while windows:
            if self.calls_left <= 0:
                return False
            low, high = windows.pop()
            page = await self._page(low, high)
            stamps = self._keep(page)
            if len(page) < self.page_size:
                self._finished(stamps)
                continue
            halves = _split(low, high, stamps)
            if halves is not None:
                windows += halves
                continue
            offset = len(page)
            while len(page) == self.page_size:
                if self.calls_left <= 0:
                    return False
                page = await self._page(low, high, offset)
                stamps += self._keep(page)
                offset += len(page)
            self._finished(stamps)
        return True


def _split(
    low: datetime, high: datetime, stamps: list[datetime]
) -> list[tuple[datetime, datetime]] | None:
    """Two windows covering `(low, high)`, the newer first (windows are read as a stack), or
    None when the window is too narrow to split. The cut is at the median `created_at` of the
    full page (whatever Seam's order, about half of the window's events lie on each side; for
    oldest-first answers the older half is then read in one call), else at the middle of the
    window. `between` is an open interval: the older half ends 1 ms after the cut, so an event
    stamped exactly at the cut is in it."""
    cuts = [_whole_millisecond(low + (high - low) / 2)]
    if stamps:
        cuts.insert(0, _whole_millisecond(sorted(stamps)[len(stamps) // 2]))
    for cut in cuts:
        if low < cut and cut + MILLISECOND < high:
            return [(cut, high), (low, cut + MILLISECOND)]
        if low < cut - MILLISECOND and cut + MILLISECOND >= high:
            # The events crowd the window's end: cut that end off as a window of its own.
            return [(cut - MILLISECOND, high), (low, cut)]
    return None


def _whole_millisecond(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def catch_up_events(runtime: Runtime, *, page_size: int = EVENTS_PAGE_SIZE) -> int:
    """Store (and hand on) every event of the types guestkey acts on since the cursor minus
    the overlap; move the cursor to the newest `created_at` read. Returns how many were new."""
    from app.webhooks.service import enqueue_stored

    async with runtime.sessionmaker() as session:
        cursor = await _cursor(session)
    reader = EventWindows(runtime, page_size=page_size)
    complete = await reader.read(cursor - EVENTS_OVERLAP, utcnow() + EVENTS_AHEAD)
    if not complete:
        log.warning("reconciler.events_behind", read_until=str(reader.newest_read))
    stored = 0
    doors_changed = False
    async with runtime.sessionmaker() as session:
        for event_id, event in reader.events.items():
            event_type = event.get("event_type")
            handled, door_event = event_type in HANDLED_EVENTS, event_type in DOOR_EVENTS
            inserted = await session.scalar(
                insert(SeamWebhook)
                .values(
                    id=uuid.uuid4(),
                    svix_id=f"events.list:{event_id}",
                    event_id=event_id,
                    event_type=event_type,
                    payload=redact(event),
                    outcome=(
                        InboxOutcome.RECEIVED
                        if handled
                        else InboxOutcome.PROCESSED
                        if door_event
                        else InboxOutcome.IGNORED
                    ).value,
                    outcome_reason=None if handled or door_event else UNHANDLED,
                    processed_at=None if handled else utcnow(),
                )
                .on_conflict_do_nothing()
                .returning(SeamWebhook.id)
            )
            if inserted is None:
                continue
            stored += 1
            doors_changed |= door_event
            if handled:
                await enqueue_stored(session, webhook_id=inserted, payload=event)
        if doors_changed:
            await enqueue_door_refresh(session)
        if reader.newest_read is not None and reader.newest_read > cursor:
            await session.execute(
                insert(ReconcilerCursor)
                .values(name=EVENTS_CURSOR, position=reader.newest_read)
                .on_conflict_do_update(
                    index_elements=["name"], set_={"position": reader.newest_read}
                )
            )
        await session.commit()
    if stored:
        log.info("reconciler.events_caught_up", count=stored)
    return stored


async def retry_stalled_jobs(seconds_since_heartbeat: float = 20.0) -> int:
    stalled = list(
        await jobs.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
    )
    retried = 0
    for job in stalled:
        await release_queueing_lock(None, job_id=job.id)  # see app.worker.app
        try:
            await jobs.job_manager.retry_job(job)
        except ConnectorException:  # no longer `doing`: another check put it back meanwhile
            continue
        retried += 1
        log.warning("reconciler.stalled_job_retried", task=job.task_name, job_id=job.id)
    return retried


INBOX_RETENTION = timedelta(days=30)  # longer than Svix retries (about 28 hours) by far
FINISHED_JOBS_RETENTION_HOURS = 72


async def purge_expired(runtime: Runtime, *, now: datetime | None = None) -> dict[str, int]:
    """Erase guests' contact details and codes after the retention period; prune the inbox
    and finished jobs. Each step is one statement, bounded by an indexed condition."""
    from app.delivery.channels import outbox_directory
    from app.delivery.models import Delivery
    from app.reservations.models import AccessMethod, ReservationEvent

    now = now or utcnow()
    cutoff = now - runtime.settings.guestkey_retention
    async with runtime.sessionmaker() as session:
        expired = select(Reservation.id).where(
            Reservation.ends_at < cutoff, Reservation.purged_at.is_(None)
        )
        ids = list(await session.scalars(expired.limit(1000)))
        recipients: set[str] = set()
        if ids:
            # Copies outside these tables: outbox files, the grant and identity at Seam.
            guests = await guests_to_erase(session, reservation_ids=ids)
            await erase_at_seam_later(session, guests=guests, purged=ids)
            recipients = set(
                await session.scalars(
                    select(Delivery.recipient).where(Delivery.reservation_id.in_(ids))
                )
            )
            recipients |= {
                address for guest in guests for address in (guest.email, guest.phone) if address
            }
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
                # The dedupe key ends with the recipient's digest: unique without it.
                .values(recipient="(erased)", dedupe_key="erased:" + cast(Delivery.id, Text))
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
    files = await asyncio.to_thread(
        erase_outbox_files, outbox_directory(runtime.settings), recipients=recipients
    )
    await jobs.job_manager.delete_old_jobs(nb_hours=FINISHED_JOBS_RETENTION_HOURS)
    counts = {
        "reservations_erased": len(ids),
        "outbox_files_erased": files,
        "webhooks_pruned": int(pruned.rowcount),  # type: ignore[attr-defined]
    }
    if any(counts.values()):
        log.info("maintenance.purged", **counts)
    return counts
