"""The database pool and sessions.

The pool holds at most `pool_size` connections, opened as needed and kept: a burst of more
callers than it holds waits for connections instead of opening short-lived extra ones (each
would be a new PostgreSQL backend, planning every statement afresh, closed again as soon as it
was returned). A session can run its statements without a transaction, then begin one.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import event, text

from app.db import create_engine, create_sessionmaker, with_transaction, without_transaction


async def test_a_burst_reuses_the_pool_instead_of_opening_more(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=3)
    opened = 0

    @event.listens_for(engine.sync_engine, "connect")
    def counted(*_: object) -> None:
        nonlocal opened
        opened += 1

    async def one_request() -> int:
        async with engine.connect() as connection:
            await asyncio.sleep(0.01)  # held for a moment, as a request holds it
            return int(await connection.scalar(text("SELECT 1")))

    try:
        for _ in range(3):  # three bursts of twelve callers
            assert await asyncio.gather(*(one_request() for _ in range(12))) == [1] * 12
        assert opened == 3
        assert engine.sync_engine.pool.checkedin() == 3  # kept open for the next burst
    finally:
        await engine.dispose()


async def _rows_after(database_url: str, *, begin_one: bool) -> int:
    engine = create_engine(database_url, pool_size=2)
    name = f"written-then-rolled-back-{begin_one}"
    insert = text("INSERT INTO api_client (id, name) VALUES (gen_random_uuid(), :name)")
    try:
        async with create_sessionmaker(engine)() as session:
            assert await without_transaction(session)
            await session.execute(text("SELECT 1"))  # on its own
            if begin_one:
                await with_transaction(session)
            await session.execute(insert, {"name": name})
            await session.rollback()
        async with engine.connect() as connection:
            return int(
                await connection.scalar(
                    text("SELECT count(*) FROM api_client WHERE name = :name"), {"name": name}
                )
            )
    finally:
        await engine.dispose()


async def test_a_session_without_a_transaction_can_begin_one(clean_database: str) -> None:
    assert await _rows_after(clean_database, begin_one=False) == 1  # each statement its own
    assert await _rows_after(clean_database, begin_one=True) == 0  # the insert rolled back
