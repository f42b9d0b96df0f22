"""How the reference apps are served: exactly as `guestkey serve` serves guestkey.

The same `uvicorn.run` call as `guestkey serve` (`app.cli.run_server`: one process, uvicorn's
default loop and HTTP implementation — uvloop and httptools, both installed — no access log,
proxy headers), the same tuning of Python's garbage collector (`app.cli.tune_gc`), and the
same database engine as guestkey (`app.db.create_engine`: SQLAlchemy async, psycopg 3, a pool
of 20 connections kept open, a ping only for a connection idle for 2 s or more).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import create_engine


def engine_lifespan(
    database_url: str, schema: str
) -> tuple[Any, Callable[[], async_sessionmaker[AsyncSession]]]:
    holder: dict[str, async_sessionmaker[AsyncSession]] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url)  # guestkey's own engine settings
        async with engine.begin() as connection:
            for statement in schema.split(";"):
                if statement.strip():
                    await connection.execute(text(statement))
        holder["sessions"] = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        try:
            yield
        finally:
            await engine.dispose()

    return lifespan, lambda: holder["sessions"]


def serve(app: FastAPI) -> None:
    from app.cli import run_server, tune_gc

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    tune_gc()  # the collector as guestkey's processes set it
    run_server(app, host=args.host, port=args.port)
