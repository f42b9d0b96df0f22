"""Telling the booking system what happened, as signed Standard Webhooks.

When `GUESTKEY_CALLBACK_URL` is set, each notable change of a reservation is enqueued — in the
same transaction as the change — as a durable job that POSTs
`{"type": "reservation.issued", "timestamp": …, "data": {…}}` signed with `svix` under
`GUESTKEY_CALLBACK_SECRET`, so any Svix / Standard Webhooks library verifies it. The message id
(`webhook-id`) is stable across retries, so the receiver can deduplicate. Payloads carry the
reservation's state, never the PIN code (the booking system reads it with GET when it needs it).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.reservations.models import Reservation
from app.worker.queue import defer

EVENT_TYPES = (
    "reservation.issued",
    "reservation.delivered",
    "reservation.failed",
    "reservation.cancelled",
    "reservation.code_changed",
)


def payload(
    event_type: str, reservation: Reservation, client_name: str | None = None
) -> dict[str, Any]:
    return {
        "type": event_type,
        "timestamp": utcnow().isoformat(),
        "data": {
            "reservation_key": reservation.reservation_key,
            "status": reservation.status,
            "access_grant_id": reservation.access_grant_id,
            "starts_at": reservation.starts_at.isoformat(),
            "ends_at": reservation.ends_at.isoformat(),
            "last_error": reservation.last_error,
            **({"client": client_name} if client_name else {}),
        },
    }


async def notify(
    session: AsyncSession, *, reservation: Reservation, event_type: str, enabled: bool
) -> None:
    """Enqueue a callback (no-op when no callback URL is configured)."""
    if not enabled:
        return
    assert event_type in EVENT_TYPES, event_type
    from app.callbacks.tasks import send_callback

    await defer(
        session,
        send_callback,
        message_id=f"msg_{uuid.uuid4().hex}",
        body=payload(event_type, reservation),
    )
