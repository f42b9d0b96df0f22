from __future__ import annotations

import structlog
from fastapi import APIRouter, Request, Response

from app.errors import GuestkeyError
from app.metrics import WEBHOOKS
from app.runtime import Runtime
from app.webhooks.service import store_delivery

router = APIRouter(tags=["webhooks"])
log = structlog.get_logger(__name__)


@router.post(
    "/webhooks/seam",
    status_code=204,
    summary="Seam's events",
    description="Where Seam delivers its events (register it with `guestkey seam connect`). "
    "Each delivery is verified against `SEAM_WEBHOOK_SECRET` (Svix signature, timestamp within "
    "5 minutes), stored once however often Seam retries it, and answered `204`.",
    responses={
        204: {"description": "Stored (or already stored)"},
        400: {"description": "Missing or malformed Svix headers"},
        401: {"description": "Bad signature, or timestamp outside ±5 minutes"},
        413: {"description": "Body over 1 MiB"},
    },
)
async def receive_seam_webhook(request: Request) -> Response:
    """Seam's webhook endpoint: verify, store once, enqueue, answer — no Seam call here.

    The hot path of intake takes no FastAPI dependencies (each costs a resolution per
    request) and opens its session only for a verified delivery."""
    runtime: Runtime = request.app.state.runtime
    body = await request.body()
    try:
        delivery = runtime.webhook_verifier.verify(body, request.headers)
    except GuestkeyError as error:
        reason = str(error.details.get("reason", error.code))
        WEBHOOKS.labels("rejected", reason).inc()
        log.warning("webhooks.seam.unverified", reason=reason, status=error.status_code)
        raise
    intake = await store_delivery(runtime.inbox, svix_id=delivery.message_id, body=delivery.body)
    WEBHOOKS.labels(intake.outcome, intake.reason or "").inc()
    if intake.outcome == "duplicate":
        log.info("webhooks.seam.duplicate", svix_id=delivery.message_id)
    return Response(status_code=204)
