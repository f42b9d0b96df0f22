"""Seam events after the first code: new codes, backup codes, revocations, door states."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from app.runtime import Runtime
from app.seam.fake.seed import seeded_id
from tests.conftest import Mailbox, settle
from tests.factories import (
    delivered_reservation,
    fake_control,
    plain_text,
    put_reservation,
    stay,
    timeline,
)


async def delivered(client: httpx.AsyncClient, runtime: Runtime) -> dict[str, Any]:
    return await delivered_reservation(client, runtime)


async def emit(fake: Any, **event: Any) -> None:
    async with fake_control(fake) as control:
        response = await control.post("/_fake/emit", json=event)
        assert response.status_code == 200, response.text


async def seam_could_not_create(
    client: httpx.AsyncClient, runtime: Runtime, fake: Any, **event: Any
) -> dict[str, Any]:
    """Seam's `access_grant.could_not_create_requested_access_methods` with these fields, and
    the reservation once guestkey has applied it."""
    await emit(fake, event_type="access_grant.could_not_create_requested_access_methods", **event)
    await settle(runtime)
    reservation: dict[str, Any] = (await client.get("/v1/reservations/bk-1")).json()
    return reservation


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


async def test_seam_failing_one_door_leaves_the_others_delivered(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    before = await delivered(client, runtime)
    missing, working = before["device_ids"]
    after = await seam_could_not_create(
        client,
        runtime,
        fake_seam,
        access_grant_id=before["access_grant_id"],
        error_message="Lock offline",
        missing_device_ids=[missing],
    )
    assert after["status"] == "delivered"
    states = {door["id"]: (door["state"], door["reason"]) for door in after["doors"]}
    assert states[working][0] == "granted"
    assert states[missing][0] == "failed" and "Lock offline" in states[missing][1]
    assert after["warnings"] == [
        {
            "code": "cannot_create_requested_access_methods",
            "message": "Seam could not create the PIN code: Lock offline",
            "door_id": missing,
        }
    ]


async def test_seam_naming_no_door_it_failed_is_a_warning_not_a_failure(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    """Seam's event may leave `missing_device_ids` out (it is optional, and an entrance has
    no such field): guestkey cannot tell that no door works, so the stay is not failed."""
    before = await delivered(client, runtime)
    after = await seam_could_not_create(
        client,
        runtime,
        fake_seam,
        access_grant_id=before["access_grant_id"],
        error_message="Could not create the requested access methods for: Bike Room.",
    )
    assert after["status"] == "delivered" and after["last_error"] is None
    assert {door["state"] for door in after["doors"]} == {"granted"}
    assert [(w["code"], w["door_id"]) for w in after["warnings"]] == [
        ("cannot_create_requested_access_methods", None)
    ]
    assert "Bike Room" in after["warnings"][0]["message"]


async def test_seam_naming_no_door_of_a_one_door_stay_fails_it(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    """One lock, its code not issued yet (the lock is offline): "one or more doors" is that
    door, so the stay can be opened by none."""
    side_gate = seeded_id("device", "Side Gate")  # takes codes, offline
    assert (await put_reservation(client, "bk-1", device_ids=[side_gate])).status_code == 201
    await settle(runtime)
    before = (await client.get("/v1/reservations/bk-1")).json()
    assert before["status"] == "granted" and before["doors"][0]["state"] == "pending", before
    after = await seam_could_not_create(
        client,
        runtime,
        fake_seam,
        access_grant_id=before["access_grant_id"],
        error_message="Could not create the requested access methods for: Side Gate.",
    )
    assert after["status"] == "failed" and "Side Gate" in after["last_error"]
    assert [(door["id"], door["state"]) for door in after["doors"]] == [(side_gate, "failed")]
    warnings = [(w["code"], w["door_id"]) for w in after["warnings"]]
    assert ("cannot_create_requested_access_methods", side_gate) in warnings, warnings

    # The lock comes back online and takes its code after all: the stay is no longer failed.
    async with fake_control(fake_seam) as control:
        back = await control.post("/_fake/device", json={"device_id": side_gate, "online": True})
        assert back.status_code == 200, back.text
    await settle(runtime)
    recovered = (await client.get("/v1/reservations/bk-1")).json()
    assert recovered["status"] == "delivered" and recovered["last_error"] is None, recovered
    assert [(door["id"], door["state"]) for door in recovered["doors"]] == [(side_gate, "granted")]


async def test_seam_failing_every_door_fails_the_reservation_naming_why(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    before = await delivered(client, runtime)
    after = await seam_could_not_create(
        client,
        runtime,
        fake_seam,
        access_grant_id=before["access_grant_id"],
        error_message="Lock offline",
        missing_device_ids=before["device_ids"],
    )
    assert after["status"] == "failed"
    assert "Lock offline" in after["last_error"]
    assert {door["state"] for door in after["doors"]} == {"failed"}


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


async def test_times_changed_at_seam_are_set_back_to_the_bookings(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    before = await delivered(client, runtime)
    grant = fake_seam.state.grants[before["access_grant_id"]]
    # Someone moves the grant at Seam: the booking system owns the times.
    grant.starts_at = datetime.fromisoformat("2030-01-01T14:00:00+00:00")
    grant.ends_at = datetime.fromisoformat("2030-01-03T10:00:00+00:00")
    await emit(
        fake_seam,
        event_type="access_grant.access_times_changed",
        access_grant_id=before["access_grant_id"],
        starts_at="2030-01-01T14:00:00.000Z",
        ends_at="2030-01-03T10:00:00.000Z",
    )
    await settle(runtime)
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert (after["starts_at"], after["ends_at"]) == (before["starts_at"], before["ends_at"])
    grant = fake_seam.state.grants[before["access_grant_id"]]
    assert grant.starts_at == datetime.fromisoformat(before["starts_at"])
    assert grant.ends_at == datetime.fromisoformat(before["ends_at"])
    assert "times_changed_at_seam" in [e["kind"] for e in await timeline(client)]


async def test_a_late_times_changed_event_of_an_earlier_update_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    before = await delivered(client, runtime)
    old_start, old_end = before["starts_at"], before["ends_at"]
    starts_at, ends_at = stay(days_from_now=9)
    await put_reservation(client, "bk-1", starts_at=starts_at, ends_at=ends_at)
    await settle(runtime)
    moved = (await client.get("/v1/reservations/bk-1")).json()
    messages = len(mailbox.messages)
    # Seam's event of the first window, redelivered late.
    await emit(
        fake_seam,
        event_type="access_grant.access_times_changed",
        access_grant_id=before["access_grant_id"],
        starts_at=old_start,
        ends_at=old_end,
    )
    await settle(runtime)
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert (after["starts_at"], after["ends_at"]) == (moved["starts_at"], moved["ends_at"])
    grant = fake_seam.state.grants[before["access_grant_id"]]
    assert grant.starts_at.isoformat().replace("+00:00", "Z") == moved["starts_at"]
    # The guest is not told a window again, let alone a stale one.
    assert len(mailbox.messages) == messages
