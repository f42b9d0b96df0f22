"""Small async helpers that build test data through guestkey's own API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.seam.fake import SEEDED_DEVICES, SEEDED_ENTRANCES

FRONT_DOOR = SEEDED_DEVICES[0]
BACK_DOOR = SEEDED_DEVICES[1]
LOBBY = SEEDED_ENTRANCES[0]


# Fixed once per test run, so two PUTs of the "same" body are identical even across midnight.
_TODAY_AT_15 = datetime.now(UTC).replace(hour=15, minute=0, second=0, microsecond=0)


def stay(days_from_now: int = 7, nights: int = 3) -> tuple[str, str]:
    """Check-in at 15:00 UTC `days_from_now` days after the run started."""
    start = _TODAY_AT_15 + timedelta(days=days_from_now)
    return (
        start.isoformat().replace("+00:00", "Z"),
        (start + timedelta(days=nights)).isoformat().replace("+00:00", "Z"),
    )


def reservation_body(**overrides: Any) -> dict[str, Any]:
    starts_at, ends_at = stay()
    body: dict[str, Any] = {
        "guest": {"name": "Ada Lovelace", "email": "ada@example.com", "locale": "en"},
        "starts_at": starts_at,
        "ends_at": ends_at,
        "device_ids": [FRONT_DOOR.id, BACK_DOOR.id],
        "acs_entrance_ids": [],
        "space_ids": [],
        "property_name": "Seaside Loft",
        "timezone": "Europe/Lisbon",
    }
    body.update(overrides)
    return body


async def put_reservation(
    client: httpx.AsyncClient, key: str = "bk-1", **overrides: Any
) -> httpx.Response:
    return await client.put(f"/v1/reservations/{key}", json=reservation_body(**overrides))


def fake_control(fake: Any) -> httpx.AsyncClient:
    """An HTTP client for the fake Seam's `/_fake/*` control endpoints."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(fake.app), base_url="http://fake-seam")


async def fail_next(fake: Any, **rule: Any) -> None:
    """Make the fake Seam fail its next matching calls (see `POST /_fake/fail`)."""
    async with fake_control(fake) as control:
        response = await control.post("/_fake/fail", json=rule)
        assert response.status_code == 200, response.text


async def doors_not_checkable(fake: Any) -> None:
    """Seam cannot answer the next PUT's door check (`devices/list` answers 503, three times:
    over real HTTP the SDK retries a read twice): the PUT is accepted unchecked and its sync
    meets the doors at Seam."""
    await fail_next(fake, count=3, status=503, endpoint="/devices/list")


async def create_in_flight(
    client: httpx.AsyncClient, runtime: Any, fake: Any
) -> asyncio.Task[None]:
    """PUT bk-1 and start its jobs while Seam takes 0.5 s over the create (and then makes the
    grant): returns the running jobs once the create is in flight."""
    from tests.conftest import run_jobs

    await fail_next(
        fake,
        count=1,
        status=0,
        timeout_seconds=0.5,
        endpoint="/access_grants/create",
        after_success=True,
    )
    await put_reservation(client, "bk-1")
    worker = asyncio.create_task(run_jobs(runtime))
    await asyncio.sleep(0.2)
    return worker


async def fake_state(fake: Any) -> dict[str, Any]:
    async with fake_control(fake) as control:
        response = await control.get("/_fake/state")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state


async def seam_calls(fake: Any, path_fragment: str = "") -> list[dict[str, Any]]:
    state = await fake_state(fake)
    return [call for call in state["calls"] if path_fragment in call["path"]]


def grant_device_ids(fake: Any, access_grant_id: str) -> list[str]:
    """The locks a grant at the fake opens (Seam keeps a grant's doors in its spaces)."""
    grant = fake.state.grants[access_grant_id]
    return sorted({d for sid in grant.space_ids for d in fake.state.spaces[sid].device_ids})


def mentions_code(text: str, code: str) -> bool:
    """Whether `code` appears in `text` as a number of its own (not inside a longer one)."""
    import re

    return re.search(rf"(?<![0-9]){re.escape(code)}(?![0-9])", text) is not None


async def delivered_reservation(
    client: httpx.AsyncClient, runtime: Any, key: str = "bk-1", **overrides: Any
) -> dict[str, Any]:
    """PUT a reservation and let everything run until the guest has their code."""
    from tests.conftest import settle

    await put_reservation(client, key, **overrides)
    await settle(runtime)
    reservation: dict[str, Any] = (await client.get(f"/v1/reservations/{key}")).json()
    assert reservation["status"] == "delivered", reservation
    return reservation


async def timeline(client: httpx.AsyncClient, key: str = "bk-1") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = (await client.get(f"/v1/reservations/{key}/events")).json()[
        "events"
    ]
    return events


def plain_text(message: Any) -> str:
    text: str = message.get_body(preferencelist=("plain",)).get_content()
    return text
