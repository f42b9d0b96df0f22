"""Alembic environment: synchronous psycopg 3, one migrator at a time (advisory lock)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool, text

from app.db import sqlalchemy_url
from app.models import Base

# Any number of replicas may run `guestkey migrate` at once; they take turns.
MIGRATION_LOCK_ID = 0x67756573  # "gues"

config = context.config
target_metadata = Base.metadata


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """procrastinate's tables are created by a migration from its own SQL, not from models."""
    if type_ == "table" and name is not None and name.startswith("procrastinate"):
        return False
    table = getattr(obj, "table", None)
    return not (table is not None and str(table.name).startswith("procrastinate"))


def database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set DATABASE_URL or run `guestkey migrate`")
    return sqlalchemy_url(url)


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                include_object=include_object,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("guestkey's migrations run online only")
run_migrations_online()
