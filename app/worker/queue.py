"""How guestkey enqueues work: on the caller's own database transaction.

Two hot statements insert their job into procrastinate's table themselves, in the statement
that writes what the job is for (a new reservation's first sync, `reservations.service._PUT`;
a routed event's events job, `webhooks.service`); everything else defers here."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Any

import procrastinate
import structlog
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy.ext.asyncio import AsyncSession

log = structlog.get_logger(__name__)


class Priority(IntEnum):
    """Workers take the highest priority first (then the oldest job): the later stages of a
    stay's pipeline go before the first step of newer stays, so under a burst of bookings each
    guest's code goes out in turn instead of every code waiting for the whole burst's grants.
    Jobs sharing a reservation lock run in priority order too, and a reservation's first sync
    is its only job until its grant exists."""

    NEW_STAY = 0  # the first sync of a new reservation; the reconciler's passes, maintenance
    STAY = 10  # changes, cancellations, Seam events, polls, callbacks
    DELIVERY = 20  # a code on its way to a guest


async def defer(
    session: AsyncSession,
    task: procrastinate.tasks.Task[Any, Any, Any],
    *,
    lock: str | None = None,
    queueing_lock: str | None = None,
    schedule_at: datetime | None = None,
    priority: Priority | None = None,
    **arguments: Any,
) -> int | None:
    """Enqueue `task` on the session's own connection, inside its transaction, and return the
    job's id.

    The job exists if and only if the caller commits. With a `queueing_lock`, a job that is
    already waiting makes this one redundant: it is skipped (in a savepoint, so the caller's
    transaction goes on) and None is returned.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver_connection = raw.driver_connection
    assert driver_connection is not None
    configured = task.configure(
        lock=lock,
        queueing_lock=queueing_lock,
        schedule_at=schedule_at,
        priority=priority,
        connection=driver_connection,
    )
    if queueing_lock is None:
        # Nothing to skip: no savepoint (two round trips fewer).
        return await configured.defer_async(**arguments)
    try:
        # psycopg makes this a SAVEPOINT inside the caller's open transaction.
        async with driver_connection.transaction():
            return await configured.defer_async(**arguments)
    except AlreadyEnqueued:
        log.debug("jobs.already_enqueued", task=task.name, queueing_lock=queueing_lock)
        return None
