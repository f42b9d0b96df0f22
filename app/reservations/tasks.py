from __future__ import annotations

import uuid

import procrastinate

from app.reservations import codes, flows
from app.reservations.service import SYNC_TASK
from app.worker.app import jobs, observed, runtime_of
from app.worker.queue import Priority
from app.worker.retry import RETRY


@jobs.task(name=SYNC_TASK, pass_context=True, retry=RETRY, priority=Priority.STAY)
@observed("reservations.sync")
async def sync_reservation(context: procrastinate.JobContext, reservation_id: str) -> None:
    """Make Seam's access grant match the reservation (create, move, replace or delete)."""
    await flows.sync_reservation(runtime_of(context), reservation_id=uuid.UUID(reservation_id))


@jobs.task(
    name="reservations.remove_superseded_code",
    pass_context=True,
    retry=RETRY,
    priority=Priority.STAY,
)
@observed("reservations.remove_superseded_code")
async def remove_superseded_code(
    context: procrastinate.JobContext, reservation_id: str, access_method_id: str
) -> None:
    """Take a code the guest's newer one replaced off the locks, at Seam."""
    await codes.remove_superseded(
        runtime_of(context),
        reservation_id=uuid.UUID(reservation_id),
        access_method_id=access_method_id,
    )
