"""Seam can announce a code before guestkey's create call has returned (over real HTTP)."""

from __future__ import annotations

from typing import Any

import httpx

from app.runtime import Runtime
from tests.conftest import Mailbox, make_retries_due, run_jobs, settle
from tests.factories import fail_next, put_reservation, timeline


async def test_a_webhook_for_a_grant_not_yet_stored_still_ends_in_one_delivery(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    # The create succeeds at Seam but its answer is lost; Seam issues and notifies meanwhile.
    await fail_next(
        fake_seam, count=1, status=502, endpoint="/access_grants/create", after_success=True
    )
    await put_reservation(client, "bk-1")
    await run_jobs(runtime)  # the create's answer is lost: a retry is scheduled
    await fake_seam.drain()  # access_method.issued arrives for a grant guestkey has not stored
    await run_jobs(runtime)  # it waits behind the reservation's sync (same lock)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "pending" and reservation["access_grant_id"] is None
    assert mailbox.messages == []

    await make_retries_due(runtime)
    await settle(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "delivered", reservation
    assert len(mailbox.to("ada@example.com")) == 1
    kinds = [event["kind"] for event in await timeline(client)]
    assert kinds.index("grant_created") < kinds.index("issued") < kinds.index("delivered")
