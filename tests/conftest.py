from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from app.migrate import upgrade_to_head
from app.runtime import Runtime
from app.worker.app import jobs, worker_options
from tests.database import create_database, drop_database, server_url, truncate_all

# The developer's own environment must not leak into the tests' settings.
for name in list(os.environ):
    if name.startswith(("GUESTKEY_", "SEAM_", "SMTP_")) or name in ("DATABASE_URL", "MAIL_FROM"):
        del os.environ[name]

API_KEYS = {"alpha": "key-alpha-0123456789", "beta": "key-beta-0123456789"}


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return server_url()


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    url = create_database(postgres_admin_url)
    upgrade_to_head(url)
    yield url
    drop_database(postgres_admin_url, url)


@pytest.fixture
def clean_database(database_url: str) -> str:
    truncate_all(database_url)
    return database_url


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "guestkey_api_keys": ",".join(f"{client}:{key}" for client, key in API_KEYS.items()),
        "GUESTKEY_LOG_FORMAT": "console",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def app(clean_database: str) -> AsyncIterator[FastAPI]:
    """guestkey with the in-process fake Seam and no background worker: tests run jobs."""
    application = create_app(make_settings(), database_url=clean_database, run_worker=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
def fake_seam(runtime: Runtime) -> Any:
    return runtime.fake_seam


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://guestkey.test",
        headers={"Authorization": f"Bearer {API_KEYS['alpha']}"},
    ) as http:
        yield http


@pytest.fixture
async def other_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://guestkey.test",
        headers={"Authorization": f"Bearer {API_KEYS['beta']}"},
    ) as http:
        yield http


async def run_jobs(runtime: Runtime) -> None:
    """Run every job that is due, until none is left."""
    await jobs.run_worker_async(**worker_options(runtime, concurrency=1, wait=False))  # type: ignore[arg-type]


async def make_retries_due(runtime: Runtime) -> int:
    """Bring jobs scheduled for a later retry forward to now; returns how many."""
    async with runtime.engine.begin() as connection:
        result = await connection.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() "
                "WHERE status = 'todo' AND scheduled_at > now()"
            )
        )
        return int(result.rowcount)


async def job_counts(runtime: Runtime) -> dict[str, int]:
    async with runtime.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status")
        )
        return {status: count for status, count in rows}
