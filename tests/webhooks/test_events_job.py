"""One job applies all the events routed to a reservation, and none is ever left without one.

A routed event names its reservation; its reservation's events job is enqueued with it unless
one is waiting. The job reads the events holding the reservation's events lock exclusively;
routing holds it shared until its commit. These tests show the three cases: an event that
finds a job waiting joins it, an event routed once the job has read its events gets the next
job, and routing waits while a job reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.runtime import Runtime
from tests.conftest import Mailbox, run_jobs, settle
from tests.factories import fake_control, put_reservation, timeline


async def _reservation(runtime: Runtime, key: str) -> tuple[str, str]:
    async with runtime.engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT id::text, access_grant_key FROM reservation WHERE reservation_key = :k"
                ),
                {"k": key},
            )
        ).one()
    return row[0], row[1]


async def _emit_delay(fake_seam: Any, grant_key: str, method: str) -> None:
    async with fake_control(fake_seam) as control:
        response = await control.post(
            "/_fake/emit",
            json={
                "event_type": "access_method.delay_in_issuing",
                "access_method_id": method,
                "access_grant_ids": [],
                "access_grant_keys": [grant_key],
            },
        )
        assert response.status_code == 200, response.text
    await fake_seam.drain()


async def _events_jobs(runtime: Runtime, reservation_id: str) -> list[str]:
    async with runtime.engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT status::text FROM procrastinate_jobs "
                "WHERE task_name = 'webhooks.apply_seam_event' "
                "AND args->>'reservation_id' = :id ORDER BY id"
            ),
            {"id": reservation_id},
        )
        return [status for (status,) in rows.all()]


async def _routed(runtime: Runtime, reservation_id: str) -> int:
    async with runtime.engine.connect() as connection:
        return int(
            await connection.scalar(
                text(
                    "SELECT count(*) FROM seam_webhook "
                    "WHERE outcome = 'routed' AND reservation_id = CAST(:id AS uuid)"
                ),
                {"id": reservation_id},
            )
        )


@pytest.fixture
async def granted(client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any) -> tuple[str, str]:
    """A reservation whose grant exists and whose code is not issued yet."""
    async with fake_control(fake_seam) as control:
        await control.post("/_fake/auto_issue", json={"enabled": False})
    await put_reservation(client, "bk-1")
    await settle(runtime)
    return await _reservation(runtime, "bk-1")


async def test_events_routed_while_a_job_waits_are_applied_by_that_one_job(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, granted: tuple[str, str]
) -> None:
    reservation_id, grant_key = granted
    await _emit_delay(fake_seam, grant_key, "00000000-0000-4000-8000-0000000000a1")
    await _emit_delay(fake_seam, grant_key, "00000000-0000-4000-8000-0000000000a2")
    await _emit_delay(fake_seam, grant_key, "00000000-0000-4000-8000-0000000000a3")

    assert await _events_jobs(runtime, reservation_id) == ["todo"]
    assert await _routed(runtime, reservation_id) == 3

    await run_jobs(runtime)

    assert await _events_jobs(runtime, reservation_id) == ["succeeded"]
    assert await _routed(runtime, reservation_id) == 0
    kinds = [entry["kind"] for entry in await timeline(client)]
    assert kinds.count("access_method_delay_in_issuing") == 3, kinds


async def test_an_event_routed_after_the_job_read_its_events_gets_the_next_job(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, granted: tuple[str, str]
) -> None:
    reservation_id, grant_key = granted
    await _emit_delay(fake_seam, grant_key, "00000000-0000-4000-8000-0000000000b1")
    # The waiting job starts (a worker fetched it): it no longer takes events routed from now.
    async with runtime.engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE procrastinate_jobs SET status = 'doing' "
                "WHERE task_name = 'webhooks.apply_seam_event' AND status = 'todo'"
            )
        )
    await _emit_delay(fake_seam, grant_key, "00000000-0000-4000-8000-0000000000b2")

    assert await _events_jobs(runtime, reservation_id) == ["doing", "todo"]
    async with runtime.engine.begin() as connection:  # the first job ends (it read nothing)
        await connection.execute(
            text("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE status = 'doing'")
        )
    await run_jobs(runtime)  # the next job applies what is routed: nothing is left behind
    assert await _routed(runtime, reservation_id) == 0
    assert await _events_jobs(runtime, reservation_id) == ["succeeded", "succeeded"]


async def test_routing_waits_while_the_job_reads_the_events(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, granted: tuple[str, str]
) -> None:
    reservation_id, grant_key = granted
    async with runtime.engine.connect() as reader:
        transaction = await reader.begin()
        # What the events job does before it reads the reservation's routed events.
        await reader.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended('reservation-events:' || :id, 0))"),
            {"id": reservation_id},
        )
        emitting = asyncio.create_task(
            _emit_delay(fake_seam, grant_key, "00000000-0000-4000-8000-0000000000c1")
        )
        await asyncio.sleep(0.5)
        assert await _routed(runtime, reservation_id) == 0  # the webhook waits for the read
        await transaction.commit()
        await asyncio.wait_for(emitting, timeout=10)
    assert await _routed(runtime, reservation_id) == 1
    assert await _events_jobs(runtime, reservation_id) == ["todo"]


async def test_a_code_whose_job_died_before_sending_is_sent_by_its_waiting_job(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_seam: Any,
    mailbox: Mailbox,
    granted: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.reservations import codes

    async def died(*args: Any, **kwargs: Any) -> None:
        return None  # the job stored the code and its message, then died before sending

    monkeypatch.setattr(codes, "send_planned", died)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    async with fake_control(fake_seam) as control:
        response = await control.post(
            "/_fake/issue", json={"access_grant_id": reservation["access_grant_id"]}
        )
        assert response.status_code == 200, response.text
    await fake_seam.drain()
    await run_jobs(runtime)
    assert mailbox.messages == []
    [delivery] = (await client.get("/v1/reservations/bk-1")).json()["deliveries"]
    assert delivery["status"] == "scheduled"

    async with runtime.engine.begin() as connection:  # its backstop job comes due
        await connection.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() "
                "WHERE task_name = 'delivery.send' AND status = 'todo'"
            )
        )
    await run_jobs(runtime)
    assert len(mailbox.to("ada@example.com")) == 1
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "delivered"


@pytest.mark.provokes_traceback
async def test_an_event_that_cannot_be_applied_holds_up_no_other(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_seam: Any,
    granted: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.webhooks import flows

    reservation_id, grant_key = granted
    original = flows._method_problem

    async def broken_for_one(session: Any, reservation: Any, event_type: str, payload: Any) -> None:
        if payload.get("access_method_id", "").endswith("d2"):
            raise ValueError("a bug in one handler")
        await original(session, reservation, event_type, payload)

    monkeypatch.setitem(flows._HANDLERS, "access_method.delay_in_issuing", broken_for_one)
    for method in ("d1", "d2", "d3"):
        await _emit_delay(fake_seam, grant_key, f"00000000-0000-4000-8000-0000000000{method}")
    await run_jobs(runtime)

    assert await _routed(runtime, reservation_id) == 0
    async with runtime.engine.connect() as connection:
        outcomes = (
            await connection.execute(
                text(
                    "SELECT payload->>'access_method_id', outcome, outcome_reason "
                    "FROM seam_webhook WHERE reservation_id = CAST(:id AS uuid) "
                    "ORDER BY received_at"
                ),
                {"id": reservation_id},
            )
        ).all()
    assert [(method[-2:], outcome) for method, outcome, _ in outcomes] == [
        ("d1", "processed"),
        ("d2", "ignored"),
        ("d3", "processed"),
    ]
    kinds = [entry["kind"] for entry in await timeline(client)]
    assert kinds.count("access_method_delay_in_issuing") == 2, kinds
    assert await _events_jobs(runtime, reservation_id) == ["succeeded"]
