"""Stalled-job recovery: its own periodic task, safe to run twice at once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from app.reconciler.flows import retry_stalled_jobs
from app.runtime import Runtime
from app.worker.app import jobs


async def dead_workers_job(runtime: Runtime) -> None:
    async with runtime.engine.begin() as connection:
        worker_id = await connection.scalar(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now() - interval '30 seconds') RETURNING id"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, worker_id) "
                "VALUES ('default', 'reservations.sync', '{}', 'doing', :worker)"
            ),
            {"worker": worker_id},
        )


async def test_a_job_put_back_by_another_check_meanwhile_is_skipped(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await dead_workers_job(runtime)
    [job] = await jobs.job_manager.get_stalled_jobs(seconds_since_heartbeat=20)
    await jobs.job_manager.retry_job(job)  # the other check

    async def still_listed(**_: Any) -> list[Any]:
        return [job]

    monkeypatch.setattr(jobs.job_manager, "get_stalled_jobs", still_listed)
    assert await retry_stalled_jobs(20) == 0


async def test_twenty_seconds_without_heartbeat_is_stalled_and_ten_is_not(
    runtime: Runtime,
) -> None:
    await dead_workers_job(runtime)  # silent for 30 s
    assert runtime.settings.guestkey_stalled_job_seconds == 20
    async with runtime.engine.begin() as connection:
        await connection.execute(
            text("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '10 seconds'")
        )
    assert await retry_stalled_jobs(runtime.settings.guestkey_stalled_job_seconds) == 0
    async with runtime.engine.begin() as connection:
        await connection.execute(
            text("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '25 seconds'")
        )
    assert await retry_stalled_jobs(runtime.settings.guestkey_stalled_job_seconds) == 1


def test_stalled_jobs_are_recovered_every_ten_seconds_without_a_lock() -> None:
    from app.reconciler.tasks import recover_stalled_jobs

    [periodic] = [
        p for p in jobs.periodic_registry.periodic_tasks.values() if p.task is recover_stalled_jobs
    ]
    assert periodic.cron == "* * * * * */10"
    assert recover_stalled_jobs.lock is None  # a killed run must not block the next ones


async def test_a_stalled_job_whose_queueing_lock_has_a_waiting_job_is_retried(
    runtime: Runtime,
) -> None:
    # A job of the same queueing lock was enqueued while the stalled one ran (it was not
    # waiting any more): putting the stalled one back to wait would break procrastinate's
    # one-waiting-job-per-queueing-lock index, and leave it `doing`, holding its lock, for good.
    async with runtime.engine.begin() as connection:
        worker_id = await connection.scalar(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now() - interval '30 seconds') RETURNING id"
            )
        )
        for status, worker in (("doing", worker_id), ("todo", None)):
            await connection.execute(
                text(
                    "INSERT INTO procrastinate_jobs "
                    "(queue_name, task_name, args, status, worker_id, lock, queueing_lock) "
                    "VALUES ('default', 'webhooks.apply_seam_event', "
                    '\'{"reservation_id": "00000000-0000-4000-8000-000000000001"}\', '
                    "CAST(:status AS procrastinate_job_status), :worker, 'reservation:x', "
                    "'reservation-events:x')"
                ),
                {"status": status, "worker": worker},
            )
    assert await retry_stalled_jobs(20) == 1
    async with runtime.engine.connect() as connection:
        statuses = (
            await connection.execute(
                text("SELECT status::text, queueing_lock FROM procrastinate_jobs ORDER BY id")
            )
        ).all()
    assert [tuple(row) for row in statuses] == [
        ("todo", None),  # back in line, without the lock the waiting job holds
        ("todo", "reservation-events:x"),
    ]
