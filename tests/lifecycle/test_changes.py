"""Bookings change: new dates, new doors, new contacts, cancellations, resends."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from app.runtime import Runtime
from tests.conftest import Mailbox, settle
from tests.factories import (
    BACK_DOOR,
    FRONT_DOOR,
    LOBBY,
    create_in_flight,
    delivered_reservation,
    fake_control,
    fake_state,
    grant_device_ids,
    plain_text,
    put_reservation,
    reservation_body,
    stay,
)


async def test_new_dates_move_the_same_grant_and_tell_the_guest(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    before = await delivered_reservation(client, runtime)
    starts_at, ends_at = stay(days_from_now=20, nights=5)
    response = await put_reservation(client, "bk-1", starts_at=starts_at, ends_at=ends_at)
    assert response.status_code == 200
    await settle(runtime)

    grants = (await fake_state(fake_seam))["access_grants"]
    assert [g["access_grant_id"] for g in grants] == [before["access_grant_id"]]
    assert datetime.fromisoformat(grants[0]["starts_at"]) == datetime.fromisoformat(starts_at)
    assert datetime.fromisoformat(grants[0]["ends_at"]) == datetime.fromisoformat(ends_at)
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert after["access_methods"][0]["code"] == before["access_methods"][0]["code"]
    messages = mailbox.to("ada@example.com")
    assert len(messages) == 2
    assert before["access_methods"][0]["code"] in plain_text(messages[1])
    assert "dates" in messages[1]["Subject"].lower()
    kinds = [e["kind"] for e in (await client.get("/v1/reservations/bk-1/events")).json()["events"]]
    assert "times_changed" in kinds


async def test_new_doors_replace_the_grant_and_send_the_new_code(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    before = await delivered_reservation(client, runtime)
    response = await put_reservation(
        client, "bk-1", device_ids=[BACK_DOOR.id], acs_entrance_ids=[LOBBY.id]
    )
    assert response.status_code == 200
    await settle(runtime)

    grants = (await fake_state(fake_seam))["access_grants"]
    assert len(grants) == 1
    assert grants[0]["access_grant_id"] != before["access_grant_id"]
    assert grant_device_ids(fake_seam, grants[0]["access_grant_id"]) == [BACK_DOOR.id]
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert after["status"] == "delivered"
    assert after["access_grant_id"] == grants[0]["access_grant_id"]
    assert {door["name"] for door in after["doors"]} == {"Back Door", "Lobby"}
    states = [(m["state"], m["code"] is None) for m in after["access_methods"]]
    assert states == [("superseded", True), ("current", False)]
    new_code = after["access_methods"][1]["code"]
    messages = mailbox.to("ada@example.com")
    assert len(messages) == 2
    assert new_code in plain_text(messages[1])
    assert "Lobby" in plain_text(messages[1]) and "Front Door" not in plain_text(messages[1])


async def test_a_new_email_address_gets_the_current_code(
    client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    before = await delivered_reservation(client, runtime)
    await put_reservation(
        client, "bk-1", guest={"name": "Ada Lovelace", "email": "ada@new.example"}
    )
    await settle(runtime)
    messages = mailbox.to("ada@new.example")
    assert len(messages) == 1
    assert before["access_methods"][0]["code"] in plain_text(messages[0])
    assert len(mailbox.to("ada@example.com")) == 1
    # The same PUT again sends nothing more.
    await put_reservation(
        client, "bk-1", guest={"name": "Ada Lovelace", "email": "ada@new.example"}
    )
    await settle(runtime)
    assert len(mailbox.messages) == 2


async def test_cancel_deletes_the_grant_only_and_is_final(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await delivered_reservation(client, runtime)
    identities_before = (await fake_state(fake_seam))["user_identities"]
    first = await client.delete("/v1/reservations/bk-1")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    await settle(runtime)
    state = await fake_state(fake_seam)
    assert state["access_grants"] == []
    assert state["user_identities"] == identities_before  # never the guest's identity
    second = await client.delete("/v1/reservations/bk-1")
    assert second.status_code == 200 and second.json()["status"] == "cancelled"
    assert (await put_reservation(client, "bk-1")).status_code == 409
    kinds = [e["kind"] for e in (await client.get("/v1/reservations/bk-1/events")).json()["events"]]
    assert kinds.index("cancelled") < kinds.index("grant_deleted")


async def test_a_cancel_racing_the_create_leaves_no_live_grant(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    worker = await create_in_flight(client, runtime, fake_seam)
    assert (await client.delete("/v1/reservations/bk-1")).status_code == 200
    await worker
    await settle(runtime)
    assert (await fake_state(fake_seam))["access_grants"] == []
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "cancelled"


async def test_resend_sends_the_current_code_again(
    client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    before = await delivered_reservation(client, runtime)
    response = await client.post("/v1/reservations/bk-1/resend")
    assert response.status_code == 202
    await settle(runtime)
    messages = mailbox.to("ada@example.com")
    assert len(messages) == 2
    assert before["access_methods"][0]["code"] in plain_text(messages[1])


async def test_resend_is_409_without_a_code_or_when_cancelled(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    async with fake_control(fake_seam) as control:
        await control.post("/_fake/auto_issue", json={"enabled": False})
    await put_reservation(client, "bk-1")
    assert (await client.post("/v1/reservations/bk-1/resend")).status_code == 409
    await settle(runtime)
    assert (await client.post("/v1/reservations/bk-1/resend")).status_code == 409
    await client.delete("/v1/reservations/bk-1")
    assert (await client.post("/v1/reservations/bk-1/resend")).status_code == 409
    assert (await client.post("/v1/reservations/nope/resend")).status_code == 404


async def test_the_timeline_tells_the_story_with_times(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await delivered_reservation(client, runtime)
    timeline = (await client.get("/v1/reservations/bk-1/events")).json()
    events = timeline["events"]
    assert [e["kind"] for e in events] == ["requested", "grant_created", "issued", "delivered"]
    times = [datetime.fromisoformat(e["at"]) for e in events]
    assert times == sorted(times)
    assert events[2]["detail"]["doors"] == ["Back Door", "Front Door"] or set(
        events[2]["detail"]["doors"]
    ) == {"Front Door", "Back Door"}
    assert events[3]["detail"]["channel"] == "email"
    assert FRONT_DOOR.id in reservation_body()["device_ids"]
