"""Telling the booking system what happened, as signed Standard Webhooks.

Each notable change of a reservation is enqueued — in the same transaction as the change — as
a durable job that POSTs `{"type": "reservation.issued", "timestamp": …, "data": {…,
"client": NAME}}` signed with `svix`, so any Svix / Standard Webhooks library verifies it. It
goes to the reservation's own client: to the callback URL of that client (`guestkey clients
set-callback`), signed with that client's secret; a client without one uses
`GUESTKEY_CALLBACK_URL` and `GUESTKEY_CALLBACK_SECRET` (deployments with one client). The message id
(`webhook-id`) is stable across retries, so the receiver can deduplicate. Payloads carry the
reservation's state, never the PIN code (the booking system reads it with GET when it needs it).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.clients.models import ApiClient
from app.db import utcnow
from app.reservations.models import Reservation
from app.worker.queue import defer

EVENT_TYPES = (
    "reservation.issued",
    "reservation.delivered",
    "reservation.failed",
    "reservation.cancelled",
    "reservation.code_changed",
    "reservation.guest_reported_problem",
)


def payload(
    event_type: str,
    reservation: Reservation,
    client_name: str | None = None,
    detail: dict[str, Any] | None = None,
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
            **(detail or {}),
        },
    }


async def notify(
    session: AsyncSession,
    *,
    reservation: Reservation,
    event_type: str,
    enabled: bool,
    detail: dict[str, Any] | None = None,
) -> None:
    """Enqueue a callback to the reservation's client (no-op when neither the client has a
    callback URL nor `GUESTKEY_CALLBACK_URL` is set: `enabled`). `detail`: fields the event
    adds to `data` (a guest's report says which door and what guestkey found)."""
    assert event_type in EVENT_TYPES, event_type
    client = (
        await session.execute(
            select(ApiClient.name, ApiClient.callback_url, ApiClient.revoked_at).where(
                ApiClient.id == reservation.client_id
            )
        )
    ).one()
    if client.revoked_at is not None or not (client.callback_url or enabled):
        return
    from app.callbacks.tasks import send_callback

    await defer(
        session,
        send_callback,
        message_id=f"msg_{uuid.uuid4().hex}",
        body=payload(event_type, reservation, client.name, detail=detail),
        client_id=str(reservation.client_id),
    )
