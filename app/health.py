from __future__ import annotations

import structlog
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.dependencies import RuntimeDep
from app.metrics import RESERVATIONS
from app.migrate import head_revision
from app.reservations.models import ReservationStatus

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


@router.get("/metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text. Reservation counts are read fresh; a database outage leaves the last
    values rather than failing the scrape."""
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
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
