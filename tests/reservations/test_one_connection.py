"""No request holds a connection of the pool while it waits for another.

A request that needs two connections at once deadlocks a full pool: with N connections, N such
requests each hold one and wait, until the pool's timeout answers every one of them 503. With a
pool of one connection, every request of the API that changes something must still succeed.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from app.clients.limits import spend_seam_change
from app.reservations import service
from app.reservations.models import Reservation
from app.reservations.schemas import ReservationIn
from app.runtime import Runtime
from tests.conftest import settle
from tests.factories import LOBBY, put_reservation, reservation_body, stay


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
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The door check asks Seam about doors the list does not hold (here: any, the list is
    empty); while Seam has not answered, the one connection serves other requests."""
    asked, answer = asyncio.Event(), asyncio.Event()
    list_devices = runtime.seam.list_devices

    async def slow_list_devices(**kwargs: Any) -> Any:
        asked.set()
        await answer.wait()
        return await list_devices(**kwargs)

    monkeypatch.setattr(runtime.seam, "list_devices", slow_list_devices)
    put = asyncio.create_task(put_reservation(client, "bk-1"))
    await asyncio.wait_for(asked.wait(), timeout=5)
    # Within the check's own 2 s wait for Seam; the connection held would block this for good.
    listed = await asyncio.wait_for(client.get("/v1/reservations"), timeout=1.5)
    assert listed.status_code == 200, listed.text
    assert not put.done()
    answer.set()
    created = await put
    assert created.status_code == 201, created.text


async def test_a_change_that_meets_a_concurrent_change_spends_the_budget_outside_its_lock(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The PUT reads a row it changes only in the guest's name; by the time it holds the row's
    lock, a concurrent PUT has moved the stay, so this one moves it back: a change of the grant,
    whose budget is spent with the lock let go, on the pool's one connection."""
    first = stay(days_from_now=3)
    assert (
        await put_reservation(client, "bk-1", starts_at=first[0], ends_at=first[1])
    ).status_code == 201
    async with runtime.sessionmaker() as session:
        row = (await session.execute(select(Reservation.id, Reservation.client_id))).one()
    spent: list[str] = []

    async def concurrent_put_moves_the_stay(*_: Any) -> None:
        moved = datetime.fromisoformat(first[1]) + timedelta(days=1)
        async with runtime.sessionmaker() as session:
            await session.execute(
                update(Reservation).where(Reservation.id == row.id).values(ends_at=moved)
            )
            await session.commit()

    async def spend() -> None:
        spent.append("spent")
        await spend_seam_change(
            runtime.engine,
            client_id=row.client_id,
            rate=runtime.settings.guestkey_seam_change_limit,
        )

    body = reservation_body(
        starts_at=first[0],
        ends_at=first[1],
        guest={"name": "Ada King", "email": "ada@example.com", "locale": "en"},
    )
    stored, created = await asyncio.wait_for(
        service.put_reservation(
            runtime.sessionmaker,
            client_id=row.client_id,
            reservation_key="bk-1",
            data=ReservationIn.model_validate(body),
            check_added_doors=concurrent_put_moves_the_stay,
            before_seam_change=spend,
        ),
        timeout=8,  # the pool's own timeout is 10 s: a deadlock would end there
    )
    assert not created and spent == ["spent"]
    assert stored.guest_name == "Ada King"
    assert stored.ends_at == datetime.fromisoformat(first[1])
