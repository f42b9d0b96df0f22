"""How the reference apps are served: exactly as `guestkey serve` serves guestkey.

The same `uvicorn.run` call as `guestkey serve` (`app.cli.run_server`: one process, uvicorn's
default loop and HTTP implementation — uvloop and httptools, both installed — no access log,
proxy headers) and the same database engine settings as app/db.py (SQLAlchemy async, psycopg 3,
pool 10 + 10 overflow, pre-ping).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine


def engine_lifespan(
    database_url: str, schema: str
) -> tuple[Any, Callable[[], async_sessionmaker[AsyncSession]]]:
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    holder: dict[str, async_sessionmaker[AsyncSession]] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(
            url, pool_size=10, max_overflow=10, pool_pre_ping=True, pool_recycle=1800
        )
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
    from app.cli import run_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    run_server(app, host=args.host, port=args.port)
