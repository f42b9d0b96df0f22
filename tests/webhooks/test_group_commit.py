"""Intake's group commit: deliveries that arrive together share one statement and one commit.

Every caller still waits for its own row, so a 204 still means stored; a duplicate is still
recognised when both copies land in the same batch; a row the database refuses fails only its
own caller; and a batch of routed events enqueues one events job per reservation.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text

from app.db import GroupCommit, create_engine
from app.runtime import Runtime
from app.webhooks.service import _write_plain
from tests.conftest import settle
from tests.factories import fake_control, put_reservation
from tests.webhooks.signing import seam_event, signed

IGNORED = "lock.locked"  # a type guestkey stores and does not act on


async def _post_all(
    client: httpx.AsyncClient, deliveries: list[tuple[bytes, dict[str, str]]]
) -> list[int]:
    responses = await asyncio.gather(
        *(
            client.post("/webhooks/seam", content=body, headers=headers)
            for body, headers in deliveries
        )
    )
    return [response.status_code for response in responses]


async def _scalar(runtime: Runtime, sql: str, **parameters: Any) -> Any:
    async with runtime.engine.connect() as connection:
        return await connection.scalar(text(sql), parameters)


async def test_concurrent_deliveries_share_statements_and_are_all_stored(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    deliveries = [signed(seam_event(IGNORED)) for _ in range(40)]
    twice = deliveries[7]  # Svix retrying while the first attempt is still being answered

    statuses = await _post_all(client, [*deliveries, twice])

    assert statuses == [204] * 41
    assert await _scalar(runtime, "SELECT count(*) FROM seam_webhook") == 40
    assert (
        await _scalar(
            runtime, "SELECT count(*) FROM seam_webhook WHERE svix_id = :id", id=twice[1]["svix-id"]
        )
        == 1
    )
    assert runtime.inbox.plain.batches < 41  # shared, not one statement per delivery


async def test_a_batch_keeps_the_order_its_rows_arrived_in(runtime: Runtime) -> None:
    rows = [_ignored_row(f"msg_{uuid.uuid4().hex}") for _ in range(30)]

    stored = await asyncio.gather(*(runtime.inbox.plain.submit(row) for row in rows))

    assert stored == [True] * 30
    assert runtime.inbox.plain.batches < 30
    async with runtime.engine.connect() as connection:
        received = dict(
            (await connection.execute(text("SELECT svix_id, received_at FROM seam_webhook"))).all()
        )
    times = [received[row["svix_id"]] for row in rows]
    assert times == sorted(set(times))  # strictly later, row after row, as they were submitted


async def test_a_row_the_database_refuses_fails_only_its_own_caller(runtime: Runtime) -> None:
    rows = [_ignored_row(f"msg_bad_{index}") for index in range(6)]
    rows[2]["body_length"] = 2**40  # out of range for its column: the whole statement fails

    results = await asyncio.gather(
        *(runtime.inbox.plain.submit(row) for row in rows), return_exceptions=True
    )

    assert isinstance(results[2], psycopg.errors.NumericValueOutOfRange)
    assert [result for index, result in enumerate(results) if index != 2] == [True] * 5
    assert await _scalar(runtime, "SELECT count(*) FROM seam_webhook") == 5


async def test_without_the_database_every_caller_gets_the_error() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:9/nowhere")
    batcher: GroupCommit[dict[str, Any], bool] = GroupCommit(engine, _write_plain)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(batcher.submit(_ignored_row(f"msg_down_{i}")) for i in range(5)),
                return_exceptions=True,
            ),
            timeout=30,
        )
    finally:
        await engine.dispose()
    assert all(isinstance(result, Exception) for result in results), results


@pytest.fixture
async def two_stays(client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any) -> list[str]:
    """Two reservations whose grants exist and whose codes are not issued yet: grant keys."""
    async with fake_control(fake_seam) as control:
        await control.post("/_fake/auto_issue", json={"enabled": False})
    await put_reservation(client, "bk-1")
    await put_reservation(client, "bk-2")
    await settle(runtime)
    async with runtime.engine.connect() as connection:
        keys = await connection.scalars(
            text("SELECT access_grant_key FROM reservation ORDER BY reservation_key")
        )
        return list(keys)


async def test_routed_events_arriving_together_get_one_job_per_reservation(
    client: httpx.AsyncClient, runtime: Runtime, two_stays: list[str]
) -> None:
    deliveries = [
        signed(
            seam_event(
                "access_method.delay_in_issuing",
                access_method_id=str(uuid.uuid4()),
                access_grant_ids=[],
                access_grant_keys=[grant_key],
            )
        )
        for _ in range(6)
        for grant_key in two_stays
    ]

    assert await _post_all(client, deliveries) == [204] * 12

    assert runtime.inbox.routed.batches < 12
    async with runtime.engine.connect() as connection:
        routed = (
            await connection.execute(
                text(
                    "SELECT r.reservation_key, count(*) FROM seam_webhook w "
                    "JOIN reservation r ON r.id = w.reservation_id "
                    "WHERE w.outcome = 'routed' GROUP BY 1 ORDER BY 1"
                )
            )
        ).all()
        jobs = (
            await connection.execute(
                text(
                    "SELECT r.reservation_key, count(*) FROM procrastinate_jobs j "
                    "JOIN reservation r ON r.id::text = j.args->>'reservation_id' "
                    "WHERE j.task_name = 'webhooks.apply_seam_event' AND j.status = 'todo' "
                    "GROUP BY 1 ORDER BY 1"
                )
            )
        ).all()
    assert [tuple(row) for row in routed] == [("bk-1", 6), ("bk-2", 6)]
    assert [tuple(row) for row in jobs] == [("bk-1", 1), ("bk-2", 1)]


def _ignored_row(svix_id: str) -> dict[str, Any]:
    event = seam_event(IGNORED)
    return {
        "id": uuid.uuid4(),
        "svix_id": svix_id,
        "event_id": event["event_id"],
        "event_type": IGNORED,
        "payload": event,
        "outcome": "ignored",
        "outcome_reason": "not_handled",
    }


class _Gated:
    """A stand-in engine and write function whose statements end when the test says."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Future[None]] = []
        self.batches: list[list[str]] = []

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        yield self

    invalidated = False

    async def execution_options(self, **_: Any) -> Any:
        return self

    async def write(self, _: Any, rows: list[str]) -> list[str]:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        self.batches.append(rows)
        await gate
        return [f"stored {row}" for row in rows]


async def _turns(count: int = 3) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_caller_arriving_as_both_statements_end_is_not_left_waiting() -> None:
    gated = _Gated()
    batcher: GroupCommit[str, str] = GroupCommit(gated, gated.write, in_flight=2)  # type: ignore[arg-type]
    first = asyncio.create_task(batcher.submit("a"))
    await _turns()
    second = asyncio.create_task(batcher.submit("b"))
    await _turns()
    assert gated.batches == [["a"], ["b"]]
    # Both statements come back in the same turn of the loop, and a delivery arrives in it.
    for gate in gated.gates:
        gate.set_result(None)
    third = asyncio.create_task(batcher.submit("c"))
    await _turns()
    assert gated.batches == [["a"], ["b"], ["c"]]  # written, without waiting for a fourth
    gated.gates[2].set_result(None)
    assert await asyncio.wait_for(asyncio.gather(first, second, third), 5) == [
        "stored a",
        "stored b",
        "stored c",
    ]


async def test_a_batch_is_capped_by_the_weight_of_its_rows() -> None:
    gated = _Gated()
    batcher: GroupCommit[str, str] = GroupCommit(  # type: ignore[arg-type]
        gated, gated.write, in_flight=1, max_bytes=100
    )
    first = asyncio.create_task(batcher.submit("first", size=10))
    await _turns()
    rest = [asyncio.create_task(batcher.submit(str(i), size=40)) for i in range(5)]
    await _turns()
    gated.gates[0].set_result(None)
    await _turns()
    assert gated.batches[1] == ["0", "1"]  # 80 bytes; a third row would make 120
    for _ in range(3):
        gated.gates[-1].set_result(None)
        await _turns()
    assert [len(batch) for batch in gated.batches] == [1, 2, 2, 1]
    assert await asyncio.wait_for(asyncio.gather(first, *rest), 5)


async def test_a_cancelled_statement_leaves_no_caller_waiting() -> None:
    gated = _Gated()
    batcher: GroupCommit[str, str] = GroupCommit(gated, gated.write, in_flight=1)  # type: ignore[arg-type]
    callers = [asyncio.create_task(batcher.submit("a"))]
    await _turns()
    callers.append(asyncio.create_task(batcher.submit("b")))  # waits for the next statement
    await _turns()
    (flight,) = batcher._tasks
    flight.cancel()  # the process is stopping
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)
    assert all(isinstance(result, asyncio.CancelledError) for result in results), results
