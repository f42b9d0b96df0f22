"""The procrastinate app: durable jobs on guestkey's own PostgreSQL.

The app object is module-level (tasks register on it at import) but does no I/O until
`open_jobs` hands it a connection pool. Tasks reach the process's runtime (database,
Seam) through the worker's `additional_context`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import procrastinate
import psycopg
import psycopg_pool
import structlog

from app.db import PING_AFTER_IDLE_SECONDS
from app.metrics import JOBS

if TYPE_CHECKING:
    from app.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])
log = structlog.get_logger(__name__)

TASK_MODULES = [
    "app.reservations.tasks",
    "app.webhooks.tasks",
    "app.delivery.tasks",
    "app.reconciler.tasks",
    "app.callbacks.tasks",
    "app.doors.tasks",
    "app.retention.tasks",
]

jobs = procrastinate.App(
    connector=procrastinate.PsycopgConnector(),  # replaced by open_jobs; no I/O until then
    import_paths=TASK_MODULES,
)


@contextlib.asynccontextmanager
async def open_jobs(conninfo: str, *, max_size: int) -> AsyncIterator[procrastinate.App]:
    """Connect the jobs app to `conninfo` for the duration of the block."""
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo,
        min_size=1,
        max_size=max_size,
        timeout=30,
        # Each of procrastinate's queries is one statement (a function call): autocommit
        # spares every fetch, finish and heartbeat a BEGIN and a COMMIT round trip.
        configure=_autocommit,
        pool_factory=_pool_checking_idle_connections,
    )
    with jobs.replace_connector(connector):
        await connector.open_async()
        try:
            yield jobs
        finally:
            await connector.close_async()


async def _autocommit(connection: psycopg.AsyncConnection[Any]) -> None:
    await connection.set_autocommit(True)


# When each pooled connection went back to the pool (app.db pings the same way).
_returned_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
    weakref.WeakKeyDictionary()
)


async def _note_returned(connection: psycopg.AsyncConnection[Any]) -> None:
    _returned_at[connection] = time.monotonic()


async def _check_if_idle(connection: psycopg.AsyncConnection[Any]) -> None:
    """procrastinate checks every connection it takes from its pool (one round trip per fetch
    and per finish): only one idle for PING_AFTER_IDLE_SECONDS is checked here."""
    returned = _returned_at.get(connection)
    if returned is not None and time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
        return
    await psycopg_pool.AsyncConnectionPool.check_connection(connection)


def _pool_checking_idle_connections(**options: Any) -> psycopg_pool.AsyncConnectionPool:
    return psycopg_pool.AsyncConnectionPool(
        **(options | {"check": _check_if_idle, "reset": _note_returned})
    )


# A running job keeps its queueing lock, and a job of the same lock may have been enqueued
# meanwhile (it was not waiting any more): putting the running one back to wait for its retry
# would then break procrastinate's one-waiting-job-per-queueing-lock index, and the job would
# stay `doing` — holding its reservation's lock — for good. A job about to be retried gives its
# queueing lock up first (the waiting job does the same work).
_RELEASE_QUEUEING_LOCK = (
    "UPDATE procrastinate_jobs SET queueing_lock = NULL "
    "WHERE id = %(id)s AND status = 'doing' AND queueing_lock IS NOT NULL"
)


async def release_queueing_lock(context: object, *, job_id: int | None = None) -> None:
    """Give up a running job's queueing lock (`context`: a task's JobContext, or pass
    `job_id`), before procrastinate puts it back to wait for a retry."""
    if job_id is None:
        job = getattr(context, "job", None)
        if job is None or not getattr(job, "queueing_lock", None):
            return
        job_id = job.id
    with contextlib.suppress(Exception):  # the database may be the failure: a stall retries it
        await jobs.connector.execute_query_async(_RELEASE_QUEUEING_LOCK, id=job_id)


def observed(task_name: str) -> Callable[[F], F]:
    """Count a task's runs by outcome: succeeded, retried (a transient failure), error."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        async def run(*args: Any, **kwargs: Any) -> Any:
            from app.worker.retry import TRANSIENT_ERRORS

            try:
                result = await function(*args, **kwargs)
            except TRANSIENT_ERRORS:
                JOBS.labels(task_name, "retried").inc()
                await release_queueing_lock(args[0] if args else None)
                raise
            except Exception:
                JOBS.labels(task_name, "error").inc()
                await release_queueing_lock(args[0] if args else None)
                raise
            JOBS.labels(task_name, "succeeded").inc()
            return result

        return run  # type: ignore[return-value]

    return decorate


def runtime_of(context: procrastinate.JobContext) -> Runtime:
    runtime: Runtime = context.additional_context["runtime"]
    return runtime


async def run_supervised_worker(runtime: Runtime, *, concurrency: int) -> None:
    """Run a worker and start it again whenever it stops: procrastinate stops a worker whose
    database connection (its LISTEN side task) fails, and a database restart must not leave
    guestkey accepting work that nobody runs. Ends only when cancelled."""
    delay = 1.0
    while True:
        try:
            await jobs.run_worker_async(**worker_options(runtime, concurrency=concurrency))
            log.error("worker.stopped_unexpectedly", restart_in_seconds=delay)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.error("worker.crashed", error=type(error).__name__, restart_in_seconds=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


# Periodic housekeeping that runs every few seconds: its start and success are not news.
QUIET_TASKS = frozenset({"reconciler.recover_stalled_jobs"})


class ExpectedFailuresFilter(logging.Filter):
    """procrastinate logs every failed job with its traceback. A transient failure (Seam or the
    database unreachable, Seam answering 5xx, an event waiting for its grant) is expected and
    retried: it becomes one warning line naming the error. Anything else keeps its traceback,
    so a traceback in the log means a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        from app.worker.retry import TRANSIENT_ERRORS

        action = getattr(record, "action", None)
        job = getattr(record, "job", None)
        task = job.get("task_name") if isinstance(job, dict) else None
        if action in ("start_job", "job_success") and task in QUIET_TASKS:
            return False
        error = record.exc_info[1] if record.exc_info else None
        if action in ("job_error_retry", "job_error") and isinstance(error, TRANSIENT_ERRORS):
            record.msg = f"{record.getMessage()} - {type(error).__name__}: {error}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            if action == "job_error_retry":
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


WORKER_NAME = "worker"


def quiet_expected_failures() -> None:
    """Install `ExpectedFailuresFilter` (once) on procrastinate's worker loggers: the module's
    (job outcomes) and the named worker's (job starts)."""
    module_logger = logging.getLogger("procrastinate.worker")
    for worker_logger in (module_logger, module_logger.getChild(WORKER_NAME)):
        if not any(isinstance(f, ExpectedFailuresFilter) for f in worker_logger.filters):
            worker_logger.addFilter(ExpectedFailuresFilter())


def worker_options(runtime: Runtime, *, concurrency: int, wait: bool = True) -> dict[str, Any]:
    quiet_expected_failures()
    return {
        "name": WORKER_NAME,
        "concurrency": concurrency,
        "wait": wait,
        "install_signal_handlers": False,
        "additional_context": {"runtime": runtime},
        # A job that waits for its reservation's lock is not announced again when the lock
        # frees (procrastinate notifies workers of new jobs only): polling is what starts it.
        "fetch_job_polling_interval": 0.25,
        "abort_job_polling_interval": 5.0,
        "shutdown_graceful_timeout": 20.0,
        # Jobs of a worker silent for GUESTKEY_STALLED_JOB_SECONDS (at least 15, default 20:
        # three missed heartbeats) are retried, checked every 10 s (reconciler.tasks).
        "update_heartbeat_interval": 5.0,
    }
