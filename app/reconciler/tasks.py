from __future__ import annotations

import uuid

import procrastinate

from app.reconciler import flows
from app.worker.app import jobs, runtime_of
from app.worker.retry import RETRY


@jobs.periodic(cron="* * * * *", periodic_id="reconcile")
@jobs.task(
    name="reconciler.reconcile",
    queue="reconciler",  # its own queue: workers take all queues; tests can leave it out
    pass_context=True,
    lock="reconciler",
    queueing_lock="reconciler",
)
async def reconcile(context: procrastinate.JobContext, timestamp: int) -> None:
    """Once a minute, whichever worker takes it: poll Seam for what webhooks missed."""
    await flows.reconcile(runtime_of(context))


@jobs.task(name="reconciler.poll_reservation", pass_context=True, retry=RETRY)
async def poll_reservation(context: procrastinate.JobContext, reservation_id: str) -> None:
    await flows.poll_reservation(runtime_of(context), reservation_id=uuid.UUID(reservation_id))
