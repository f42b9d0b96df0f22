"""Seam events after the first code: new codes, backup codes, revocations, door states."""

from __future__ import annotations

from typing import Any

import httpx

from app.runtime import Runtime
from tests.conftest import Mailbox, settle
from tests.factories import delivered_reservation, fake_control, plain_text, timeline


async def delivered(client: httpx.AsyncClient, runtime: Runtime) -> dict[str, Any]:
    return await delivered_reservation(client, runtime)


async def emit(fake: Any, **event: Any) -> None:
    async with fake_control(fake) as control:
        response = await control.post("/_fake/emit", json=event)
        assert response.status_code == 200, response.text


async def test_a_reissued_code_is_sent_once(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    before = await delivered(client, runtime)
    method_id = before["access_methods"][0]["access_method_id"]
    async with fake_control(fake_seam) as control:
        response = await control.post(
            "/_fake/reissue", json={"access_method_id": method_id, "code": "918273"}
        )
        assert response.status_code == 200
    await settle(runtime)
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert after["access_methods"][0]["code"] == "918273"
    assert after["status"] == "delivered"
    messages = mailbox.to("ada@example.com")
    assert len(messages) == 2 and "918273" in plain_text(messages[1])
    assert "code_changed" in [e["kind"] for e in await timeline(client)]


async def test_a_backup_code_replacing_the_guests_code_is_sent_once(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    before = await delivered(client, runtime)
    method_id = before["access_methods"][0]["access_method_id"]
    async with fake_control(fake_seam) as control:
        await control.post(
            "/_fake/reissue",
            json={"access_method_id": method_id, "code": "564738", "is_backup_code": True},
        )
    await settle(runtime)
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert after["access_methods"][0]["code"] == "564738"
    assert after["access_methods"][0]["is_backup_code"] is True
    assert len(mailbox.to("ada@example.com")) == 2
    changed = [e for e in await timeline(client) if e["kind"] == "code_changed"]
    assert changed[0]["reason"] == "backup code"


async def test_revoked_outside_guestkey_is_recorded_and_visible(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    before = await delivered(client, runtime)
    await emit(
        fake_seam,
        event_type="access_method.revoked",
        access_method_id=before["access_methods"][0]["access_method_id"],
        access_grant_ids=[before["access_grant_id"]],
    )
    await settle(runtime)
    revoked = [e for e in await timeline(client) if e["kind"] == "access_method_revoked"]
    assert revoked and revoked[0]["reason"] == "at Seam, not by guestkey"


async def test_a_grant_deleted_outside_guestkey_is_recorded(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    before = await delivered(client, runtime)
    await emit(
        fake_seam, event_type="access_grant.deleted", access_grant_id=before["access_grant_id"]
    )
    await settle(runtime)
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert "deleted outside guestkey" in after["last_error"]
    deleted = [e for e in await timeline(client) if e["kind"] == "grant_deleted"]
    assert deleted[0]["reason"] == "at Seam, not by guestkey"


async def test_issuing_delays_and_failures_are_visible_in_the_timeline(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    before = await delivered(client, runtime)
    for event_type in ("access_method.delay_in_issuing", "access_method.failed_to_issue"):
        await emit(
            fake_seam,
            event_type=event_type,
            access_method_id=before["access_methods"][0]["access_method_id"],
            access_grant_ids=[before["access_grant_id"]],
        )
    await settle(runtime)
    kinds = [e["kind"] for e in await timeline(client)]
    assert "access_method_delay_in_issuing" in kinds
    assert "access_method_failed_to_issue" in kinds


async def test_could_not_create_access_methods_fails_naming_the_devices(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    before = await delivered(client, runtime)
    missing = before["device_ids"][0]
    await emit(
        fake_seam,
        event_type="access_grant.could_not_create_requested_access_methods",
        access_grant_id=before["access_grant_id"],
        error_message="Lock offline",
        missing_device_ids=[missing],
    )
    await settle(runtime)
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert after["status"] == "failed"
    assert missing in after["last_error"] and "Lock offline" in after["last_error"]


async def test_door_access_events_set_each_doors_state(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    before = await delivered(client, runtime)
    lost, kept = before["doors"][0]["id"], before["doors"][1]["id"]
    await emit(
        fake_seam,
        event_type="access_grant.access_granted_to_door",
        access_grant_id=before["access_grant_id"],
        acs_entrance_id=kept,
    )
    await emit(
        fake_seam,
        event_type="access_grant.access_to_door_lost",
        access_grant_id=before["access_grant_id"],
        acs_entrance_id=lost,
    )
    await settle(runtime)
    doors = {
        d["id"]: d["state"] for d in (await client.get("/v1/reservations/bk-1")).json()["doors"]
    }
    assert doors[lost] == "lost" and doors[kept] == "granted"


async def test_access_times_changed_at_seam_are_followed(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    before = await delivered(client, runtime)
    await emit(
        fake_seam,
        event_type="access_grant.access_times_changed",
        access_grant_id=before["access_grant_id"],
        starts_at="2030-01-01T14:00:00+00:00",
        ends_at="2030-01-03T10:00:00+00:00",
    )
    await settle(runtime)
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert after["starts_at"] == "2030-01-01T14:00:00Z"
    assert after["ends_at"] == "2030-01-03T10:00:00Z"
