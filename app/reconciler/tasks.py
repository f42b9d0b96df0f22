from __future__ import annotations

import uuid

import procrastinate

from app.reconciler import flows
from app.worker.app import jobs, observed, runtime_of
from app.worker.queue import Priority
from app.worker.retry import RETRY


@jobs.periodic(cron="* * * * *", periodic_id="reconcile")
@jobs.task(
    name="reconciler.reconcile",
    queue="reconciler",  # its own queue: workers take all queues; tests can leave it out
    pass_context=True,
    lock="reconciler",
    queueing_lock="reconciler",
)
@observed("reconciler.reconcile")
async def reconcile(context: procrastinate.JobContext, timestamp: int) -> None:
    """Once a minute, whichever worker takes it: poll Seam for what webhooks missed."""
    await flows.reconcile(runtime_of(context))


@jobs.periodic(cron="* * * * * */10", periodic_id="stalled-jobs")  # 6th field: seconds
@jobs.task(
    name="reconciler.recover_stalled_jobs",
    queue="reconciler",
    pass_context=True,
    # No lock: a lock held by a run killed midway would stop every later run, and this task is
    # what frees the locks of killed jobs (the reconciler's own included). Two runs at once are
    # harmless: a job one of them put back is skipped by the other.
    queueing_lock="stalled-jobs",
)
@observed("reconciler.recover_stalled_jobs")
async def recover_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
    """Every 10 seconds: jobs held by a worker silent for GUESTKEY_STALLED_JOB_SECONDS (20 by
    default; heartbeats come every 5) go back to `todo`, so the work of a process that died
    resumes within 45 seconds on any live worker, a restarted one included."""
    await flows.retry_stalled_jobs(runtime_of(context).settings.guestkey_stalled_job_seconds)


@jobs.task(
    name="reconciler.poll_reservation", pass_context=True, retry=RETRY, priority=Priority.STAY
)
@observed("reconciler.poll_reservation")
async def poll_reservation(context: procrastinate.JobContext, reservation_id: str) -> None:
    await flows.poll_reservation(runtime_of(context), reservation_id=uuid.UUID(reservation_id))


@jobs.periodic(cron="17 * * * *", periodic_id="maintenance")
@jobs.task(
    name="reconciler.maintenance",
    queue="reconciler",
    pass_context=True,
    lock="maintenance",
    queueing_lock="maintenance",
)
@observed("reconciler.maintenance")
async def maintenance(context: procrastinate.JobContext, timestamp: int) -> None:
    """Hourly: erase expired guest data and codes, prune the inbox and finished jobs."""
    await flows.purge_expired(runtime_of(context))
