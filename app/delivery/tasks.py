from __future__ import annotations

import uuid

import procrastinate

from app.delivery import flows
from app.worker.app import jobs, observed, runtime_of
from app.worker.queue import Priority
from app.worker.retry import RETRY


@jobs.task(name="delivery.send", pass_context=True, retry=RETRY, priority=Priority.DELIVERY)
@observed("delivery.send")
async def send_delivery(context: procrastinate.JobContext, delivery_id: str) -> None:
    """Send one planned guest message (the code is read and decrypted here, never passed)."""
    await flows.send_delivery(runtime_of(context), delivery_id=uuid.UUID(delivery_id))
