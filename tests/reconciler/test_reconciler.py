"""With webhooks switched off, the reconciler alone gets every guest their code."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.reconciler.flows import catch_up_events, due_reservations_query, reconcile
from app.runtime import Runtime
from tests.conftest import Mailbox, run_jobs, settle
from tests.factories import fake_control, put_reservation


@pytest.fixture(autouse=True)
async def webhooks_off(app: Any, fake_seam: Any) -> None:
    async with fake_control(fake_seam) as control:
        response = await control.post("/_fake/webhooks", json={"enabled": False})
        assert response.status_code == 200


async def make_checks_due(runtime: Runtime) -> None:
    async with runtime.engine.begin() as connection:
        await connection.execute(
            text("UPDATE reservation SET next_check_at = now() WHERE next_check_at IS NOT NULL")
        )


async def test_polling_delivers_every_reservation_without_webhooks(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    for number in range(3):
        await put_reservation(
            client, f"bk-{number}", guest={"name": "Guest", "email": f"guest{number}@example.com"}
        )
    await settle(runtime)
    statuses = [r["status"] for r in (await client.get("/v1/reservations")).json()["items"]]
    assert statuses == ["granted"] * 3  # issued at Seam, but nobody told guestkey

    await make_checks_due(runtime)
    result = await reconcile(runtime)
    assert result["checked"] == 3
    await settle(runtime)
    statuses = [r["status"] for r in (await client.get("/v1/reservations")).json()["items"]]
    assert statuses == ["delivered"] * 3
    assert sorted(m["To"] for m in mailbox.messages) == [
        "guest0@example.com",
        "guest1@example.com",
        "guest2@example.com",
    ]
    # Nothing is due any more: a second pass polls nothing and sends nothing.
    await make_checks_due(runtime)
    assert (await reconcile(runtime))["checked"] == 0
    await settle(runtime)
    assert len(mailbox.messages) == 3


async def test_missed_events_are_caught_up_from_events_list(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)
    stored = await catch_up_events(runtime)
    assert stored >= 1  # access_method.issued (only the types guestkey acts on are asked for)
    await settle(runtime)
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "delivered"
    assert len(mailbox.messages) == 1
    assert await catch_up_events(runtime) == 0  # the cursor moved on; nothing twice


async def test_a_reservation_whose_sync_job_died_is_synced_again(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await put_reservation(client, "bk-1")
    async with runtime.engine.begin() as connection:  # the job is lost for good
        await connection.execute(text("UPDATE procrastinate_jobs SET status = 'failed'"))
    await make_checks_due(runtime)
    await reconcile(runtime)
    await run_jobs(runtime)
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] in ("granted", "issued")


async def test_a_stalled_job_of_a_dead_worker_is_retried(runtime: Runtime) -> None:
    async with runtime.engine.begin() as connection:
        worker_id = await connection.scalar(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now() - interval '10 minutes') RETURNING id"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, worker_id) "
                "VALUES ('default', 'reservations.sync', '{}', 'doing', :worker)"
            ),
            {"worker": worker_id},
        )
    assert (await reconcile(runtime))["stalled_jobs"] == 1
    async with runtime.engine.connect() as connection:
        status = await connection.scalar(
            text(
                "SELECT status::text FROM procrastinate_jobs WHERE task_name = 'reservations.sync'"
            )
        )
    assert status == "todo"


async def test_the_due_query_reads_only_due_rows_through_its_index(runtime: Runtime) -> None:
    """The pass's cost follows what is due, not what is stored."""
    async with runtime.engine.begin() as connection:
        client_id = await connection.scalar(
            text(
                "INSERT INTO api_client (id, name) VALUES (gen_random_uuid(), 'bulk') RETURNING id"
            )
        )
        await connection.execute(
            text(
                """
                INSERT INTO reservation (id, client_id, reservation_key, status, guest_name,
                    guest_locale, starts_at, ends_at, timezone, device_ids, acs_entrance_ids,
                    space_ids, access_grant_key, grant_generation, check_count, next_check_at)
                SELECT gen_random_uuid(), :client, 'bulk-' || n, 'delivered', 'Guest', 'en',
                    now() + interval '1 day', now() + interval '3 days', 'UTC', '{}', '{}', '{}',
                    'bulk-key-' || n, 1, 0,
                    CASE WHEN n % 1000 = 0 THEN now() - interval '1 minute' END
                FROM generate_series(1, 20000) AS n
                """
            ),
            {"client": client_id},
        )
        await connection.execute(text("ANALYZE reservation"))
    from sqlalchemy.dialects import postgresql

    from app.db import utcnow

    query = due_reservations_query(utcnow())
    compiled = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    async with runtime.engine.connect() as connection:
        plan = "\n".join(
            row[0] for row in await connection.execute(text(f"EXPLAIN ANALYZE {compiled}"))
        )
    assert "ix_reservation_next_check_at" in plan, plan
    assert "Seq Scan" not in plan, plan
