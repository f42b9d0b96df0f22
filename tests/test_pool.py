"""The database pool: at most `pool_size` connections, opened as needed and kept.

A burst of more callers than the pool holds waits for connections instead of opening
short-lived extra ones (each would be a new PostgreSQL backend, planning every statement
afresh, closed again as soon as it was returned).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import event, text

from app.db import create_engine


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
