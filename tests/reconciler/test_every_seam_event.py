"""Every event type Seam's spec defines, as a real workspace sends them: through webhook intake
and through the events.list catch-up, without one of them stopping either path."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from app.reconciler.flows import catch_up_events
from app.runtime import Runtime
from app.seam.fake.spec import event_samples
from app.webhooks.events import ACTED_ON_EVENTS
from app.webhooks.models import InboxOutcome, SeamWebhook
from tests.conftest import Mailbox, settle
from tests.factories import delivered_reservation, fake_control, mentions_code, plain_text


async def webhooks(fake: Any, *, enabled: bool) -> None:
    async with fake_control(fake) as control:
        response = await control.post("/_fake/webhooks", json={"enabled": enabled})
        assert response.status_code == 200, response.text


async def emit_every_sample(fake: Any) -> list[dict[str, Any]]:
    async with fake_control(fake) as control:
        response = await control.post("/_fake/emit_samples", json={})
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events


async def inbox_by_event_id(runtime: Runtime) -> dict[str, SeamWebhook]:
    async with runtime.sessionmaker() as session:
        rows = await session.scalars(select(SeamWebhook))
        return {row.event_id: row for row in rows if row.event_id}


async def test_every_event_type_goes_through_intake_and_the_catch_up(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    before = await delivered_reservation(client, runtime)
    every_type = set(event_samples())
    assert len(every_type) > 100

    # Webhooks: each sample is verified and stored once, none refused, none breaks the stay.
    sent = await emit_every_sample(fake_seam)
    assert {event["event_type"] for event in sent} == every_type
    await settle(runtime)
    stored = await inbox_by_event_id(runtime)
    for event in sent:
        row = stored[event["event_id"]]
        assert row.outcome != InboxOutcome.REJECTED, (event["event_type"], row.outcome_reason)
        assert "code" not in (row.payload or {}) or row.payload["code"] in (None, "[redacted]")

    # The catch-up: the same types again, seen only through events.list.
    await webhooks(fake_seam, enabled=False)
    polled = await emit_every_sample(fake_seam)
    method_id = before["access_methods"][0]["access_method_id"]
    async with fake_control(fake_seam) as control:
        response = await control.post(
            "/_fake/reissue", json={"access_method_id": method_id, "code": "73915082"}
        )
        assert response.status_code == 200
    await catch_up_events(runtime)
    await settle(runtime)

    stored = await inbox_by_event_id(runtime)
    caught = {event["event_type"] for event in polled if event["event_id"] in stored}
    # It asks Seam only for the types guestkey acts on, and takes every one of them.
    assert caught == every_type & ACTED_ON_EVENTS
    # The code only the catch-up could see reaches the guest.
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert [m["code"] for m in after["access_methods"] if m["state"] == "current"] == ["73915082"]
    messages = mailbox.to("ada@example.com")
    assert len(messages) == 2 and mentions_code(plain_text(messages[-1]), "73915082")
