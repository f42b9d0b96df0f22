"""Job priorities: a stay already under way finishes before the next new stay is started."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from app.runtime import Runtime
from app.worker.queue import Priority
from tests.conftest import Mailbox, make_retries_due, run_jobs, settle
from tests.factories import fail_next, fake_control, put_reservation


async def started_jobs(runtime: Runtime) -> list[tuple[str, str]]:
    """(task, reservation key or "-") of every job, in the order workers started them."""
    async with runtime.engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT job.task_name, coalesce(reservation.reservation_key, '-') "
                "FROM procrastinate_events AS event "
                "JOIN procrastinate_jobs AS job ON job.id = event.job_id "
                "LEFT JOIN reservation ON reservation.id::text = job.args->>'reservation_id' "
                "WHERE event.type = 'started' ORDER BY event.id"
            )
        )
        return [(task, key) for task, key in rows.all()]


async def default_jobs(runtime: Runtime, column: str, where: str = "true") -> list[tuple[str, Any]]:
    """(task, `column`) of the default queue's jobs, oldest first."""
    async with runtime.engine.connect() as connection:
        rows = await connection.execute(
            text(
                f"SELECT task_name, {column} FROM procrastinate_jobs "
                f"WHERE queue_name = 'default' AND {where} ORDER BY id"
            )
        )
        return [(task, value) for task, value in rows.all()]


async def test_an_issued_code_goes_out_before_a_newer_reservations_grant_is_made(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    async with fake_control(fake_seam) as control:
        await control.post("/_fake/auto_issue", json={"enabled": False})
        await put_reservation(client, "first", guest={"name": "Ada", "email": "ada@example.com"})
        await settle(runtime)  # the first stay's grant; its code not issued yet
        await put_reservation(client, "second", guest={"name": "Bo", "email": "bo@example.com"})
        first = (await client.get("/v1/reservations/first")).json()
        response = await control.post(
            "/_fake/issue", json={"access_grant_id": first["access_grant_id"]}
        )
        assert response.status_code == 200, response.text
        await fake_seam.drain()  # the first stay's `issued` arrives after the second's PUT

        await run_jobs(runtime)

        order = await started_jobs(runtime)
        # Enqueued last, the first stay's event and email still run before the second stay's
        # first sync (oldest-first would have run that sync before either). The email goes out
        # from the event's own job: its backstop job never runs.
        second_sync = order.index(("reservations.sync", "second"))
        assert ("webhooks.apply_seam_event", "first") in order[:second_sync], order
        assert ("delivery.send", "-") not in order, order
        async with runtime.engine.connect() as connection:
            sent_first = await connection.scalar(
                text(
                    "SELECT delivery.sent_at < (SELECT min(event.at) "
                    "  FROM procrastinate_events AS event "
                    "  JOIN procrastinate_jobs AS job ON job.id = event.job_id "
                    "  JOIN reservation ON reservation.id::text = job.args->>'reservation_id' "
                    "  WHERE event.type = 'started' AND reservation.reservation_key = 'second') "
                    "FROM delivery JOIN reservation ON reservation.id = delivery.reservation_id "
                    "WHERE reservation.reservation_key = 'first'"
                )
            )
            backstops = await connection.scalar(
                text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'delivery.send'")
            )
        assert sent_first is True
        assert backstops == 0
        assert len(mailbox.to("ada@example.com")) == 1
        assert mailbox.to("bo@example.com") == []


async def test_an_event_routed_before_its_grant_is_stored_does_not_hold_back_the_first_sync(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    # A waiting job of higher priority holds back lower ones under the same lock, even while
    # it waits for a later retry: the early event must not outrank the sync it waits for.
    await fail_next(fake_seam, count=1, status=503, endpoint="/access_grants/create")
    await put_reservation(client, "early")
    await run_jobs(runtime)  # the first create fails; the sync waits for its retry
    async with runtime.engine.connect() as connection:
        grant_key = await connection.scalar(
            text("SELECT access_grant_key FROM reservation WHERE reservation_key = 'early'")
        )
    async with fake_control(fake_seam) as control:
        response = await control.post(
            "/_fake/emit",
            json={
                "event_type": "access_method.delay_in_issuing",
                "access_method_id": "00000000-0000-4000-8000-0000000000aa",
                "access_grant_ids": [],
                "access_grant_keys": [grant_key],
            },
        )
        assert response.status_code == 200, response.text
    await fake_seam.drain()

    waiting = await default_jobs(runtime, "priority", "status = 'todo'")
    assert waiting == [
        ("reservations.sync", Priority.NEW_STAY),
        ("webhooks.apply_seam_event", Priority.NEW_STAY),
    ]
    await make_retries_due(runtime)
    await settle(runtime)
    assert (await client.get("/v1/reservations/early")).json()["status"] == "delivered"
    outcomes = await default_jobs(runtime, "status")
    assert outcomes[:2] == [
        ("reservations.sync", "succeeded"),
        ("webhooks.apply_seam_event", "succeeded"),
    ]
    assert {status for _, status in outcomes} == {"succeeded"}, outcomes
