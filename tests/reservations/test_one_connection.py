"""No request holds a connection of the pool while it waits for another.

A request that needs two connections at once deadlocks a full pool: with N connections, N such
requests each hold one and wait, until the pool's timeout answers every one of them 503. With a
pool of one connection, every request of the API that changes something must still succeed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from app.runtime import Runtime
from tests.conftest import settle
from tests.factories import LOBBY, fail_next, put_reservation, stay


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "database_pool_size": 1}


async def test_every_change_succeeds_on_a_pool_of_one_connection(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    assert runtime.engine.pool.size() == 1  # type: ignore[attr-defined]
    starts_at, ends_at = stay(days_from_now=1)
    created = await put_reservation(client, "bk-1", starts_at=starts_at, ends_at=ends_at)
    assert created.status_code == 201, created.text
    await settle(runtime)
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "delivered"

    # New times: a change of the grant, which spends the client's budget of Seam changes.
    later = stay(days_from_now=2)
    moved = await put_reservation(client, "bk-1", starts_at=later[0], ends_at=later[1])
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["ends_at"]) == datetime.fromisoformat(later[1])
    # A door added: the door check, then the change.
    widened = await put_reservation(
        client, "bk-1", starts_at=later[0], ends_at=later[1], acs_entrance_ids=[LOBBY.id]
    )
    assert widened.status_code == 200, widened.text
    assert widened.json()["acs_entrance_ids"] == [LOBBY.id]
    await settle(runtime)

    resent = await client.post("/v1/reservations/bk-1/resend")
    assert resent.status_code == 202, resent.text
    cancelled = await client.delete("/v1/reservations/bk-1")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] in ("cancelling", "cancelled")


async def test_a_door_check_holds_no_connection_while_it_waits_for_seam(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    """The door check asks Seam about doors the list does not hold (here: any, the list is
    empty); while Seam is slow, the one connection serves other requests."""
    await fail_next(fake_seam, count=1, status=0, timeout_seconds=1.5, endpoint="/devices/list")
    put = asyncio.create_task(put_reservation(client, "bk-1"))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    listed = await client.get("/v1/reservations")
    waited = time.monotonic() - started
    assert listed.status_code == 200, listed.text
    assert not put.done() and waited < 1.0, waited
    created = await put
    assert created.status_code == 201, created.text
    # What Seam said of the doors was stored.
    assert (await client.get("/v1/doors")).json()["items"]
