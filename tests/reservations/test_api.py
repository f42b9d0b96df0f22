"""The reservations API: validation, auth and client isolation, idempotent PUT, list, cancel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.reservations.models import Reservation
from app.runtime import Runtime
from tests.conftest import job_counts, settle
from tests.factories import (
    FRONT_DOOR,
    LOBBY,
    put_reservation,
    reservation_body,
    seam_calls,
    stay,
)


async def reservation_count(runtime: Runtime) -> int:
    async with runtime.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Reservation)) or 0)


async def test_put_creates_a_pending_reservation(client: httpx.AsyncClient) -> None:
    response = await put_reservation(client, "bk-1")
    assert response.status_code == 201
    body = response.json()
    assert body["reservation_key"] == "bk-1"
    assert body["status"] == "pending"
    assert body["guest"] == {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": None,
        "locale": "en",
    }
    assert body["timezone"] == "Europe/Lisbon"
    assert body["property_name"] == "Seaside Loft"
    assert sorted(body["device_ids"]) == sorted(reservation_body()["device_ids"])
    assert body["access_grant_id"] is None
    assert body["access_methods"] == [] and body["deliveries"] == [] and body["warnings"] == []
    # Until Seam has a grant, the doors are the ones asked for, each pending and unnamed.
    assert sorted(body["doors"], key=lambda door: door["id"]) == [
        {"type": "device", "id": door_id, "name": None, "state": "pending", "reason": None}
        for door_id in sorted(reservation_body()["device_ids"])
    ]
    assert body["last_error"] is None

    fetched = await client.get("/v1/reservations/bk-1")
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_identical_put_changes_nothing_and_calls_nothing(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    body = reservation_body()
    first = await client.put("/v1/reservations/bk-1", json=body)
    assert first.status_code == 201
    jobs_after_first = await job_counts(runtime)
    calls_after_first = await seam_calls(fake_seam)  # the door check of the new doors

    second = await client.put("/v1/reservations/bk-1", json=body)
    assert second.status_code == 200
    assert second.json() == first.json()
    assert await job_counts(runtime) == jobs_after_first
    assert await seam_calls(fake_seam) == calls_after_first


async def test_put_with_changes_answers_200_and_updates(client: httpx.AsyncClient) -> None:
    await put_reservation(client, "bk-1")
    starts_at, ends_at = stay(days_from_now=10, nights=2)
    response = await put_reservation(client, "bk-1", starts_at=starts_at, ends_at=ends_at)
    assert response.status_code == 200
    assert response.json()["starts_at"].startswith(starts_at[:19])
    timeline = (await client.get("/v1/reservations/bk-1/events")).json()["events"]
    assert [event["kind"] for event in timeline] == ["requested", "changed"]
    assert timeline[1]["detail"]["fields"] == ["starts_at", "ends_at"]


async def test_a_delivered_reservation_reads_the_same_however_it_is_asked_for(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """GET and an identical PUT read the reservation and its related rows in one statement;
    the list reads them through the ORM: the same resource either way."""
    body = reservation_body()
    await client.put("/v1/reservations/bk-1", json=body)
    await settle(runtime)
    got = (await client.get("/v1/reservations/bk-1")).json()
    assert got["status"] == "delivered", got
    assert [method["code"] is not None for method in got["access_methods"]] == [True]
    assert got["doors"] and all(door["name"] for door in got["doors"])
    assert [delivery["status"] for delivery in got["deliveries"]] == ["sent"]

    again = await client.put("/v1/reservations/bk-1", json=body)
    assert again.status_code == 200
    assert again.json() == got
    assert (await client.get("/v1/reservations")).json()["items"] == [got]


async def test_same_instant_in_another_offset_is_no_change(client: httpx.AsyncClient) -> None:
    ends_at = "2030-06-04T11:00:00Z"
    await put_reservation(client, "bk-1", starts_at="2030-06-01T15:00:00Z", ends_at=ends_at)
    response = await put_reservation(
        client, "bk-1", starts_at="2030-06-01T16:00:00+01:00", ends_at=ends_at
    )
    assert response.status_code == 200
    events = (await client.get("/v1/reservations/bk-1/events")).json()["events"]
    assert [event["kind"] for event in events] == ["requested"]


async def test_door_order_and_case_do_not_count_as_a_change(client: httpx.AsyncClient) -> None:
    doors = reservation_body()["device_ids"]
    await put_reservation(client, "bk-1", device_ids=doors)
    response = await put_reservation(
        client, "bk-1", device_ids=[d.upper() for d in reversed(doors)]
    )
    assert response.status_code == 200
    events = (await client.get("/v1/reservations/bk-1/events")).json()["events"]
    assert len(events) == 1


# validation: every rule answers 422 naming the field, stores nothing, enqueues nothing

PAST = (datetime.now(UTC) - timedelta(days=1)).isoformat()


def _guest(**fields: Any) -> dict[str, Any]:
    guest: dict[str, Any] = {"name": "Ada", "email": "ada@example.com"}
    guest.update(fields)
    return {key: value for key, value in guest.items() if value is not ...}


INVALID_BODIES: list[tuple[str, dict[str, Any], tuple[str | int, ...]]] = [
    ("guest missing", {"guest": ...}, ("body", "guest")),
    ("guest name missing", {"guest": _guest(name=...)}, ("body", "guest", "name")),
    ("guest name blank", {"guest": _guest(name="  ")}, ("body", "guest", "name")),
    (
        "no email and no phone",
        {"guest": _guest(email=...)},
        ("body", "guest", "email"),
    ),
    ("email invalid", {"guest": _guest(email="not-an-email")}, ("body", "guest", "email")),
    ("phone not E.164", {"guest": _guest(phone="4155550100")}, ("body", "guest", "phone")),
    ("phone with letters", {"guest": _guest(phone="+1415CALLME")}, ("body", "guest", "phone")),
    ("locale malformed", {"guest": _guest(locale="english!")}, ("body", "guest", "locale")),
    ("unknown guest field", {"guest": _guest(age=40)}, ("body", "guest", "age")),
    ("starts_at missing", {"starts_at": ...}, ("body", "starts_at")),
    ("ends_at missing", {"ends_at": ...}, ("body", "ends_at")),
    ("starts_at without offset", {"starts_at": "2030-01-01T10:00:00"}, ("body", "starts_at")),
    ("ends_at without offset", {"ends_at": "2030-01-05T10:00:00"}, ("body", "ends_at")),
    ("starts_at not a timestamp", {"starts_at": "tomorrow"}, ("body", "starts_at")),
    ("starts_at as a number", {"starts_at": 1893456000}, ("body", "starts_at")),
    (
        "ends_at before starts_at",
        {"starts_at": "2030-01-05T10:00:00Z", "ends_at": "2030-01-01T10:00:00Z"},
        ("body", "ends_at"),
    ),
    (
        "ends_at equal to starts_at",
        {"starts_at": "2030-01-05T10:00:00Z", "ends_at": "2030-01-05T10:00:00Z"},
        ("body", "ends_at"),
    ),
    (
        "ends_at in the past",
        {"starts_at": "2020-01-01T10:00:00Z", "ends_at": PAST},
        ("body", "ends_at"),
    ),
    (
        "no doors at all",
        {"device_ids": [], "acs_entrance_ids": [], "space_ids": []},
        ("body", "device_ids"),
    ),
    ("door id not a Seam id", {"device_ids": ["front-door"]}, ("body", "device_ids", 0)),
    ("door ids not a list", {"device_ids": FRONT_DOOR.id}, ("body", "device_ids")),
    (
        "too many doors",
        {"device_ids": [str(uuid.uuid4()) for _ in range(101)]},
        ("body", "device_ids"),
    ),
    ("timezone unknown", {"timezone": "Mars/Olympus_Mons"}, ("body", "timezone")),
    ("property name too long", {"property_name": "x" * 201}, ("body", "property_name")),
    ("unknown top-level field", {"colour": "blue"}, ("body", "colour")),
]


@pytest.mark.parametrize(
    ("overrides", "location"),
    [(overrides, location) for _, overrides, location in INVALID_BODIES],
    ids=[name for name, _, _ in INVALID_BODIES],
)
async def test_invalid_body_is_422_naming_the_field(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_seam: Any,
    overrides: dict[str, Any],
    location: tuple[str | int, ...],
) -> None:
    body = reservation_body()
    for name, value in overrides.items():
        if value is ...:
            del body[name]
        else:
            body[name] = value
    response = await client.put("/v1/reservations/bk-1", json=body)
    assert response.status_code == 422, response.text
    locations = [tuple(error["loc"]) for error in response.json()["detail"]]
    assert location in locations, locations
    assert await reservation_count(runtime) == 0
    assert await job_counts(runtime) == {}
    assert await seam_calls(fake_seam) == []


@pytest.mark.parametrize("key", ["has space", "a" * 129, "emoji-🙂", "semi;colon", "slash%2Fkey"])
async def test_invalid_reservation_key_is_422(client: httpx.AsyncClient, key: str) -> None:
    response = await client.put(f"/v1/reservations/{key}", json=reservation_body())
    assert response.status_code in (404, 422)
    assert response.status_code != 201


async def test_reservation_key_allows_its_whole_alphabet(client: httpx.AsyncClient) -> None:
    key = "Ab-9._:" + "z" * 121
    response = await client.put(f"/v1/reservations/{key}", json=reservation_body())
    assert response.status_code == 201
    assert response.json()["reservation_key"] == key


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"[]", b'"just a string"', b"null", b'{"guest": '], ids=repr
)
async def test_malformed_json_is_a_4xx(
    client: httpx.AsyncClient, runtime: Runtime, raw: bytes
) -> None:
    response = await client.put(
        "/v1/reservations/bk-1", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert await reservation_count(runtime) == 0


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient, runtime: Runtime) -> None:
    body = reservation_body(property_name="x" * 100_000)
    response = await client.put("/v1/reservations/bk-1", json=body)
    assert response.status_code == 413
    assert await reservation_count(runtime) == 0


async def test_phone_only_guest_is_accepted(client: httpx.AsyncClient) -> None:
    response = await put_reservation(
        client, "bk-phone", guest={"name": "Grace", "phone": "+14155550100"}
    )
    assert response.status_code == 201
    assert response.json()["guest"]["phone"] == "+14155550100"


async def test_entrances_alone_are_enough_doors(client: httpx.AsyncClient) -> None:
    response = await put_reservation(client, "bk-2", device_ids=[], acs_entrance_ids=[LOBBY.id])
    assert response.status_code == 201


# auth and isolation


async def test_missing_key_is_401_with_bearer_challenge(app: Any) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://guestkey.test"
    ) as anonymous:
        for response in (
            await anonymous.get("/v1/reservations"),
            await anonymous.put("/v1/reservations/bk-1", json=reservation_body()),
            await anonymous.get("/v1/reservations/bk-1"),
        ):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"


async def test_wrong_key_is_401(app: Any, runtime: Runtime) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://guestkey.test",
        headers={"Authorization": "Bearer key-alpha-0123456789x"},
    ) as intruder:
        response = await intruder.put("/v1/reservations/bk-1", json=reservation_body())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert await reservation_count(runtime) == 0


async def test_a_client_never_sees_another_clients_reservation(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient
) -> None:
    await put_reservation(client, "bk-1")
    assert (await other_client.get("/v1/reservations/bk-1")).status_code == 404
    assert (await other_client.delete("/v1/reservations/bk-1")).status_code == 404
    assert (await other_client.get("/v1/reservations/bk-1/events")).status_code == 404
    assert (await other_client.get("/v1/reservations")).json()["items"] == []
    # The same key is a different reservation for another client.
    theirs = await put_reservation(
        other_client, "bk-1", guest={"name": "Eve", "email": "eve@example.com"}
    )
    assert theirs.status_code == 201
    mine = await client.get("/v1/reservations/bk-1")
    assert mine.json()["guest"]["name"] == "Ada Lovelace"


# list


async def test_list_is_newest_first_with_a_cursor(client: httpx.AsyncClient) -> None:
    for number in range(5):
        assert (await put_reservation(client, f"bk-{number}")).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/reservations", params=params)).json()
        seen += [item["reservation_key"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["bk-4", "bk-3", "bk-2", "bk-1", "bk-0"]


async def test_list_filters_by_status(client: httpx.AsyncClient) -> None:
    await put_reservation(client, "bk-1")
    await put_reservation(client, "bk-2")
    await client.delete("/v1/reservations/bk-2")
    cancelled = (await client.get("/v1/reservations", params={"status": "cancelled"})).json()
    assert [item["reservation_key"] for item in cancelled["items"]] == ["bk-2"]
    pending = (await client.get("/v1/reservations", params={"status": "pending"})).json()
    assert [item["reservation_key"] for item in pending["items"]] == ["bk-1"]


@pytest.mark.parametrize(
    "params",
    [{"status": "lost"}, {"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"cursor": "garbage!"}],
)
async def test_list_rejects_bad_parameters(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await client.get("/v1/reservations", params=params)
    assert response.status_code == 422


# cancel


async def test_cancel_is_idempotent_and_blocks_later_puts(client: httpx.AsyncClient) -> None:
    await put_reservation(client, "bk-1")
    first = await client.delete("/v1/reservations/bk-1")
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    second = await client.delete("/v1/reservations/bk-1")
    assert second.status_code == 200
    assert second.json()["status"] == "cancelled"
    again = await put_reservation(client, "bk-1")
    assert again.status_code == 409
    assert (await client.delete("/v1/reservations/unknown")).status_code == 404
