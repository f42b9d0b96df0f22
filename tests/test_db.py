"""The database pool and sessions.

The pool holds at most `pool_size` connections, opened as needed and kept: a burst of more
callers than it holds waits for connections instead of opening short-lived extra ones (each
would be a new PostgreSQL backend, planning every statement afresh, closed again as soon as it
was returned). A connection lent in autocommit goes back to the pool transactional.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import event, text

from app.db import autocommit_connection, create_engine, create_sessionmaker


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


async def test_an_autocommit_connection_commits_each_statement_and_goes_back_transactional(
    clean_database: str,
) -> None:
    """`autocommit_connection`: each statement is committed as it runs; the pool's next user of
    the same connection (a session) is in a transaction again, which a rollback undoes."""
    engine = create_engine(clean_database, pool_size=1)  # one connection: the same one reused
    insert = text("INSERT INTO api_client (id, name) VALUES (gen_random_uuid(), :name)")
    count = text("SELECT count(*) FROM api_client WHERE name = :name")
    try:
        async with autocommit_connection(create_sessionmaker(engine)) as connection:
            await connection.execute(insert, {"name": "on-its-own"})
            await connection.rollback()  # nothing to undo: already committed
        async with create_sessionmaker(engine)() as session:
            assert await session.scalar(count, {"name": "on-its-own"}) == 1
            await session.execute(insert, {"name": "in-a-transaction"})
            await session.rollback()
        async with engine.connect() as connection:
            assert await connection.scalar(count, {"name": "in-a-transaction"}) == 0
    finally:
        await engine.dispose()
