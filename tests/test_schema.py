"""Migrations own the whole schema: `upgrade head` on an empty database matches the models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool

from app.db import sqlalchemy_url
from app.migrate import upgrade_to_head
from app.models import Base
from tests.database import create_database, drop_database


@pytest.fixture
def empty_database(postgres_admin_url: str) -> Iterator[str]:
    url = create_database(postgres_admin_url, prefix="guestkey_schema")
    yield url
    drop_database(postgres_admin_url, url)


def test_upgrade_head_on_an_empty_database_matches_the_models(empty_database: str) -> None:
    upgrade_to_head(empty_database)
    engine = create_engine(sqlalchemy_url(empty_database), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": lambda obj, name, type_, *_: (
                        not (
                            (name or "").startswith("procrastinate")
                            or getattr(getattr(obj, "table", None), "name", "").startswith(
                                "procrastinate"
                            )
                        )
                    ),
                },
            )
            assert compare_metadata(context, Base.metadata) == []
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert {table.name for table in Base.metadata.sorted_tables} <= tables
    # procrastinate's schema comes from a migration too
    assert {"procrastinate_jobs", "procrastinate_events", "procrastinate_workers"} <= tables


def test_migrations_run_twice_are_a_no_op(empty_database: str) -> None:
    upgrade_to_head(empty_database)
    upgrade_to_head(empty_database)
