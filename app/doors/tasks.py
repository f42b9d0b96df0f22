from __future__ import annotations

import procrastinate
import structlog

from app.doors import service
from app.runtime import Runtime
from app.worker.app import jobs, observed, runtime_of
from app.worker.queue import Priority
from app.worker.retry import RETRY, TRANSIENT_ERRORS

log = structlog.get_logger(__name__)


async def refresh(runtime: Runtime) -> None:
    """Read every door from Seam (no transaction open meanwhile), then store the list."""
    doors = await service.read_workspace_doors(runtime.seam)
    async with runtime.sessionmaker() as session:
        gone = await service.replace_all(session, doors=doors)
        await session.commit()
    log.info("doors.refreshed", doors=len(doors), gone=gone)


@jobs.task(
    name="doors.refresh",
    pass_context=True,
    retry=RETRY,
    priority=Priority.STAY,
    lock=service.REFRESH_LOCK,
    queueing_lock=service.REFRESH_LOCK,
)
@observed("doors.refresh")
async def refresh_doors(context: procrastinate.JobContext) -> None:
    """After door events: one refresh for however many events asked meanwhile."""
    await refresh(runtime_of(context))


@jobs.periodic(cron="*/5 * * * *", periodic_id="doors")
@jobs.task(
    name="doors.refresh_periodically",
    queue="reconciler",  # with the reconciler: workers take all queues; tests leave it out
    pass_context=True,
    lock=service.REFRESH_LOCK,
    queueing_lock="doors-refresh-periodic",
)
@observed("doors.refresh_periodically")
async def refresh_periodically(context: procrastinate.JobContext, timestamp: int) -> None:
    """Every five minutes: the door list a PUT's check reads stays fresh. Seam unreachable is
    one warning line; the next period tries again."""
    try:
        await refresh(runtime_of(context))
    except TRANSIENT_ERRORS as error:
        log.warning("doors.refresh_failed", error=f"{type(error).__name__}: {error}")
