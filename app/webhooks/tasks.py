from __future__ import annotations

import uuid

import procrastinate

from app.webhooks import flows
from app.webhooks.service import EVENTS_TASK
from app.worker.app import jobs, observed, runtime_of
from app.worker.queue import Priority
from app.worker.retry import RETRY


@jobs.task(
    name="webhooks.process_seam_event", pass_context=True, retry=RETRY, priority=Priority.STAY
)
@observed("webhooks.process_seam_event")
async def process_seam_event(context: procrastinate.JobContext, webhook_id: str) -> None:
    """Find whose reservation a stored Seam event concerns and hand it over."""
    await flows.route_seam_event(runtime_of(context), webhook_id=uuid.UUID(webhook_id))


@jobs.task(name=EVENTS_TASK, pass_context=True, retry=RETRY, priority=Priority.STAY)
@observed(EVENTS_TASK)
async def apply_seam_event(
    context: procrastinate.JobContext, reservation_id: str, webhook_id: str | None = None
) -> None:
    """Act on the Seam events routed to one reservation (under the reservation's lock).
    `webhook_id`: a job enqueued for one event by an earlier guestkey."""
    await flows.apply_seam_events(
        runtime_of(context),
        reservation_id=uuid.UUID(reservation_id),
        webhook_id=uuid.UUID(webhook_id) if webhook_id else None,
    )
