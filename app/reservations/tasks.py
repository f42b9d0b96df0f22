from __future__ import annotations

import uuid

import procrastinate

from app.reservations import flows
from app.reservations.service import SYNC_TASK
from app.worker.app import jobs, observed, runtime_of
from app.worker.queue import Priority
from app.worker.retry import RETRY


@jobs.task(name=SYNC_TASK, pass_context=True, retry=RETRY, priority=Priority.STAY)
@observed("reservations.sync")
async def sync_reservation(context: procrastinate.JobContext, reservation_id: str) -> None:
    """Make Seam's access grant match the reservation (create, move, replace or delete)."""
    await flows.sync_reservation(runtime_of(context), reservation_id=uuid.UUID(reservation_id))
