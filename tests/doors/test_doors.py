"""The door list (GET /v1/doors) and the door check at PUT (DESIGN.md §9.2)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from app.doors.models import Door
from app.doors.service import REFRESH_AFTER_EVENT
from app.doors.tasks import refresh
from app.runtime import Runtime
from app.seam.client import DoorInfo, _device_door, _entrance_door
from app.seam.fake import SEEDED_DEVICES, SEEDED_ENTRANCES, SEEDED_SPACES
from app.seam.fake.seed import (
    CARD_ONLY_ENTRANCES,
    KEYPADLESS_DEVICES,
    OFFLINE_DEVICES,
    seeded_id,
)
from tests.conftest import job_counts, run_jobs
from tests.factories import (
    BACK_DOOR,
    FRONT_DOOR,
    LOBBY,
    fail_next,
    put_reservation,
    reservation_body,
    seam_calls,
)
from tests.webhooks.signing import seam_event, signed

UNKNOWN = "00000000-0000-4000-8000-000000000000"
DOOR_LISTS = ("/devices/list", "/acs/entrances/list", "/spaces/list")


async def door_list_calls(fake: Any) -> list[dict[str, Any]]:
    return [call for call in await seam_calls(fake) if call["path"] in DOOR_LISTS]


async def test_get_doors_lists_the_workspace_after_a_refresh(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    assert (await client.get("/v1/doors")).json() == {"items": []}  # never refreshed yet
    await refresh(runtime)
    items = (await client.get("/v1/doors")).json()["items"]
    by_id = {item["id"]: item for item in items}
    for door in SEEDED_DEVICES:
        assert by_id[door.id] == {
            "type": "device",
            "id": door.id,
            "name": door.name,
            "can_take_pin_code": door.id not in KEYPADLESS_DEVICES,
            "online": door.id not in OFFLINE_DEVICES,
        }
    for door in SEEDED_ENTRANCES:
        assert by_id[door.id]["type"] == "acs_entrance" and by_id[door.id]["name"] == door.name
        assert by_id[door.id]["can_take_pin_code"] is (door.id not in CARD_ONLY_ENTRANCES)
    assert by_id[SEEDED_SPACES[0].id]["type"] == "space"
    assert by_id[SEEDED_SPACES[0].id]["can_take_pin_code"] is True
    assert [item["type"] for item in items] == sorted(
        (item["type"] for item in items), key=["device", "acs_entrance", "space"].index
    )


async def test_get_doors_needs_an_api_key(app: Any) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://guestkey.test"
    ) as anonymous:
        response = await anonymous.get("/v1/doors")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_door_gone_from_seam_is_marked_gone_and_left_out(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await refresh(runtime)
    async with runtime.sessionmaker() as session:  # a door Seam listed once, no more
        await session.execute(
            text(
                "INSERT INTO door (id, door_type, door_id, name, can_take_pin_code, online, "
                "refreshed_at) VALUES (gen_random_uuid(), 'device', :id, 'Old Shed', true, "
                "true, now() - interval '1 hour')"
            ),
            {"id": UNKNOWN},
        )
        await session.commit()
    assert UNKNOWN in [item["id"] for item in (await client.get("/v1/doors")).json()["items"]]
    await refresh(runtime)
    assert UNKNOWN not in [item["id"] for item in (await client.get("/v1/doors")).json()["items"]]
    async with runtime.sessionmaker() as session:
        gone = await session.scalar(select(Door).where(Door.door_id == UNKNOWN))
    assert gone is not None and gone.gone_at is not None


async def test_an_unknown_door_is_refused_with_its_field_and_index(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    response = await put_reservation(
        client, "bk-1", device_ids=[FRONT_DOOR.id, UNKNOWN.upper()], acs_entrance_ids=[UNKNOWN]
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "unusable_door"
    assert [(error["loc"], error["type"]) for error in body["detail"]] == [
        (["body", "device_ids", 1], "unknown_door"),  # the index in the list as sent
        (["body", "acs_entrance_ids", 0], "unknown_door"),
    ]
    assert UNKNOWN in body["detail"][0]["msg"] and "not a door" in body["detail"][0]["msg"]
    assert (await client.get("/v1/reservations/bk-1")).status_code == 404
    assert await job_counts(runtime) == {}
    assert await seam_calls(fake_seam, "/access_grants/") == []


async def test_known_doors_are_accepted_and_cached_and_an_identical_put_asks_nothing(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    body = reservation_body(acs_entrance_ids=[LOBBY.id], space_ids=[SEEDED_SPACES[0].id])
    assert (await client.put("/v1/reservations/bk-1", json=body)).status_code == 201
    asked = await door_list_calls(fake_seam)
    assert {call["path"] for call in asked} == set(DOOR_LISTS)  # the cache was empty

    assert (await client.put("/v1/reservations/bk-1", json=body)).status_code == 200
    # Another reservation with the same doors: the cache knows them now.
    assert (await client.put("/v1/reservations/bk-2", json=body)).status_code == 201
    assert await door_list_calls(fake_seam) == asked


async def test_only_added_doors_are_checked(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    assert (await put_reservation(client, "bk-1", device_ids=[FRONT_DOOR.id])).status_code == 201
    async with runtime.sessionmaker() as session:  # the cache forgets everything
        await session.execute(update(Door).values(gone_at=text("now()")))
        await session.commit()
    before = await door_list_calls(fake_seam)
    # Times changed, doors the same: no door is asked about.
    response = await put_reservation(
        client, "bk-1", device_ids=[FRONT_DOOR.id], property_name="Changed"
    )
    assert response.status_code == 200
    assert await door_list_calls(fake_seam) == before
    # A door added: only it is asked about.
    response = await put_reservation(client, "bk-1", device_ids=[FRONT_DOOR.id, BACK_DOOR.id])
    assert response.status_code == 200
    added = (await door_list_calls(fake_seam))[len(before) :]
    assert [call["path"] for call in added] == ["/devices/list"]


async def test_when_seam_cannot_be_asked_in_time_the_put_is_accepted(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await fail_next(fake_seam, count=1, status=0, timeout_seconds=5, endpoint="/devices/list")
    started = time.monotonic()
    response = await put_reservation(client, "bk-1", device_ids=[UNKNOWN])
    assert response.status_code == 201, response.text
    assert time.monotonic() - started < 4.0  # about 2 s: the check's own limit
    await run_jobs(runtime)  # the sync meets the unknown door at Seam
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "failed" and "not_found" in reservation["last_error"]


async def test_a_device_event_refreshes_the_door_list_once(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    for _ in range(3):
        event = seam_event(
            "device.disconnected",
            device_id=FRONT_DOOR.id,
            connected_account_id=str(uuid.uuid4()),
            error_code="account_disconnected",
        )
        body, headers = signed(event)
        response = await client.post("/webhooks/seam", content=body, headers=headers)
        assert response.status_code == 204
    assert await job_counts(runtime) == {"todo": 1}  # three events, one refresh
    # Due a while after the first event: a lock going on and offline over and over costs Seam
    # one listing per that while, not one per event.
    async with runtime.engine.begin() as connection:
        due_in = await connection.scalar(
            text("SELECT extract(epoch FROM scheduled_at - now()) FROM procrastinate_jobs")
        )
        assert 10 < due_in <= REFRESH_AFTER_EVENT.total_seconds(), due_in
        await run_jobs(runtime)
        assert await door_list_calls(fake_seam) == []  # not yet
        await connection.execute(text("UPDATE procrastinate_jobs SET scheduled_at = now()"))
    await run_jobs(runtime)
    assert sorted(call["path"] for call in await door_list_calls(fake_seam)) == sorted(DOOR_LISTS)
    items = (await client.get("/v1/doors")).json()["items"]
    assert FRONT_DOOR.id in [item["id"] for item in items]


async def test_a_door_that_cannot_take_a_pin_code_is_refused_naming_it_and_why(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def devices_without_keypad(*, device_ids: Any = None) -> list[DoorInfo]:
        return [
            DoorInfo("device", door_id, "Shed", can_take_pin_code=False, online=True)
            for door_id in device_ids or []
        ]

    async def entrances_card_only(*, acs_entrance_ids: Any = None) -> list[DoorInfo]:
        return [
            DoorInfo("acs_entrance", door_id, "Bike Room", can_take_pin_code=False, online=None)
            for door_id in acs_entrance_ids or []
        ]

    monkeypatch.setattr(runtime.seam, "list_devices", devices_without_keypad)
    monkeypatch.setattr(runtime.seam, "list_entrances", entrances_card_only)
    shed, bike_room = str(uuid.uuid4()), str(uuid.uuid4())
    response = await put_reservation(
        client, "bk-1", device_ids=[shed], acs_entrance_ids=[bike_room]
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [(error["loc"], error["type"], error["input"]) for error in detail] == [
        (["body", "device_ids", 0], "cannot_take_pin_code", shed),
        (["body", "acs_entrance_ids", 0], "cannot_take_pin_code", bike_room),
    ]
    assert "Shed" in detail[0]["msg"] and "cannot take a PIN code" in detail[0]["msg"]
    assert "Bike Room" in detail[1]["msg"] and "does not open with a PIN code" in detail[1]["msg"]
    assert (await client.get("/v1/reservations/bk-1")).status_code == 404
    # The PUT wrote nothing, but what Seam said of the doors is kept in the list.
    async with runtime.sessionmaker() as session:
        stored = (await session.scalars(select(Door).order_by(Door.door_type))).all()
    assert [(door.door_type, door.door_id, door.can_take_pin_code) for door in stored] == [
        ("acs_entrance", bike_room, False),
        ("device", shed, False),
    ]


def test_seams_door_flags_decide_whether_a_door_takes_a_pin_code() -> None:
    lock = {"device_id": "d-1", "display_name": "Shed", "properties": {"online": False}}
    assert _device_door({**lock, "can_program_online_access_codes": False}) == DoorInfo(
        "device", "d-1", "Shed", can_take_pin_code=False, online=False
    )
    assert _device_door({**lock, "can_program_online_access_codes": True}).can_take_pin_code
    entrance = {"acs_entrance_id": "e-1", "display_name": "Bike Room"}
    assert not _entrance_door({**entrance, "can_unlock_with_code": False}).can_take_pin_code
    assert _entrance_door({**entrance, "can_unlock_with_code": True}).can_take_pin_code


def test_a_door_without_seams_flag_cannot_take_a_pin_code() -> None:
    """Seam leaves a capability flag out when the door lacks the capability (its capability
    guide); the list of capabilities does not stand in for the flag."""
    lock = {"device_id": "d-1", "display_name": "Front Door", "properties": {"online": True}}
    assert not _device_door(
        {**lock, "capabilities_supported": ["access_code", "lock"]}
    ).can_take_pin_code
    assert not _entrance_door({"acs_entrance_id": "e-1", "display_name": "Lobby"}).can_take_pin_code
    # An offline lock keeps the flag: it takes the code when it is back.
    offline = {**lock, "properties": {"online": False}, "can_program_online_access_codes": True}
    assert _device_door(offline).can_take_pin_code


SHED = seeded_id("device", "Shed")  # a lock without keypad
SIDE_GATE = seeded_id("device", "Side Gate")  # takes codes, offline
BIKE_ROOM = seeded_id("acs_entrance", "Bike Room")  # card only


async def test_the_fakes_unsupported_doors_are_refused_and_an_offline_one_accepted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    response = await put_reservation(
        client, "bk-1", device_ids=[FRONT_DOOR.id, SHED], acs_entrance_ids=[BIKE_ROOM]
    )
    assert response.status_code == 422, response.text
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [
        (["body", "device_ids", 1], "cannot_take_pin_code"),
        (["body", "acs_entrance_ids", 0], "cannot_take_pin_code"),
    ]
    response = await put_reservation(client, "bk-1", device_ids=[SIDE_GATE])
    assert response.status_code == 201, response.text  # offline: Seam loads it when back
    await refresh(runtime)
    doors = {item["id"]: item for item in (await client.get("/v1/doors")).json()["items"]}
    assert doors[SHED]["can_take_pin_code"] is False
    assert doors[BIKE_ROOM]["can_take_pin_code"] is False
    assert doors[SIDE_GATE]["can_take_pin_code"] is True and doors[SIDE_GATE]["online"] is False
