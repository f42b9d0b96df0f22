from __future__ import annotations

import hmac
import time

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.dependencies import RuntimeDep
from app.errors import Unauthorized
from app.metrics import RESERVATIONS
from app.migrate import head_revision
from app.reservations.models import ReservationStatus
from app.runtime import Runtime

router = APIRouter(tags=["operations"])
log = structlog.get_logger(__name__)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready"}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when PostgreSQL answers and the schema is at the newest migration."""
    try:
        async with runtime.engine.connect() as connection:
            current = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception as error:  # any failure means "not ready", never a 500
        log.warning("readyz.database_unavailable", error=type(error).__name__)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    head = head_revision()
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "schema": current, "expected": head}, status_code=503
        )
    return JSONResponse({"status": "ok", "schema": current})


# The reservation gauge counts every row of the table: at most once a minute, whatever the
# number of scrapers.
RESERVATION_COUNT_INTERVAL_SECONDS = 60.0


@router.get("/metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep, request: Request) -> Response:
    """Prometheus text, behind `GUESTKEY_METRICS_TOKEN` when that is set. A database outage
    leaves the last reservation counts rather than failing the scrape."""
    token = runtime.settings.guestkey_metrics_token
    if token is not None and not _bearer_matches(request, token.get_secret_value()):
        raise Unauthorized("metrics need Authorization: Bearer <GUESTKEY_METRICS_TOKEN>")
    now = time.monotonic()
    if now - runtime.reservation_counts_at >= RESERVATION_COUNT_INTERVAL_SECONDS:
        runtime.reservation_counts_at = now
        await _count_reservations(runtime)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


async def _count_reservations(runtime: Runtime) -> None:
    try:
        async with runtime.engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT status, count(*) FROM reservation GROUP BY status")
            )
            counts: dict[str, int] = {status: count for status, count in rows}
        for status in ReservationStatus:
            RESERVATIONS.labels(status.value).set(counts.get(status.value, 0))
    except Exception as error:  # a scrape must not fail because the database does
        log.warning("metrics.reservations_unavailable", error=type(error).__name__)
