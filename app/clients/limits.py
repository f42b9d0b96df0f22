"""Per-client limits (DESIGN.md §9.7): a budget on requests that change Seam.

A buggy or hostile booking system must not move, replace or delete grants (or resend codes)
without end. Requests are counted per client in fixed windows, in PostgreSQL so every API
replica shares one count, on a connection of their own that commits at once: the count never
holds the request's transaction, and a refused request does not count.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.clients.models import SeamChangeBudget
from app.config import Rate
from app.db import utcnow
from app.errors import SeamChangeLimitReached
from app.metrics import RATE_LIMITED


def window_start(now: datetime, rate: Rate) -> datetime:
    seconds = rate.window.total_seconds()
    return datetime.fromtimestamp(now.timestamp() // seconds * seconds, tz=now.tzinfo)


async def spend_seam_change(engine: AsyncEngine, *, client_id: uuid.UUID, rate: Rate) -> None:
    """Count one request that changes Seam, or raise `SeamChangeLimitReached` (429)."""
    now = utcnow()
    start = window_start(now, rate)
    table = SeamChangeBudget.__table__
    statement = (
        insert(SeamChangeBudget)
        .values(client_id=client_id, window_start=start, spent=1)
        .on_conflict_do_update(
            index_elements=["client_id", "window_start"],
            set_={"spent": table.c.spent + 1},
            where=table.c.spent < rate.count,
        )
        .returning(table.c.spent)
    )
    async with engine.begin() as connection:
        spent = await connection.scalar(statement)
        await connection.execute(
            delete(SeamChangeBudget).where(
                SeamChangeBudget.client_id == client_id, SeamChangeBudget.window_start < start
            )
        )
    if spent is None or rate.count < 1:
        RATE_LIMITED.labels("seam_changes").inc()
        retry_after = (start + rate.window - now).total_seconds()
        raise SeamChangeLimitReached(
            f"this client has made {rate.count} changes to door access within "
            f"{rate.window} (GUESTKEY_SEAM_CHANGE_LIMIT); retry later",
            retry_after_seconds=retry_after,
        )
