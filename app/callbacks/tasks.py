from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import procrastinate
import structlog
from svix.webhooks import Webhook

from app.clients.models import ApiClient
from app.config import split_secrets
from app.worker.app import jobs, observed, runtime_of
from app.worker.queue import Priority
from app.worker.retry import CALLBACK_RETRY, RetryLater

log = structlog.get_logger(__name__)


class CallbackNotAccepted(RetryLater):
    pass


@jobs.task(name="callbacks.send", pass_context=True, retry=CALLBACK_RETRY, priority=Priority.STAY)
@observed("callbacks.send")
async def send_callback(
    context: procrastinate.JobContext,
    message_id: str,
    body: dict[str, Any],
    client_id: str | None = None,
) -> None:
    """POST one signed event to the booking system; any non-2xx is retried with backoff."""
    runtime = runtime_of(context)
    settings = runtime.settings
    url = settings.guestkey_callback_url
    secrets = split_secrets(settings.guestkey_callback_secret)
    if client_id is not None:
        async with runtime.sessionmaker() as session:
            client = await session.get(ApiClient, uuid.UUID(client_id))
        if client is None or client.revoked_at is not None:
            return  # a revoked client is told nothing more
        if client.callback_url and client.callback_secret_ciphertext:
            url = client.callback_url
            secrets = [runtime.cipher.decrypt(client.callback_secret_ciphertext)]
    if not url or not secrets:
        return
    raw = json.dumps(body, separators=(",", ":"))
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secrets[0]).sign(message_id, now, raw),
        "user-agent": "guestkey",
    }
    try:
        async with httpx.AsyncClient(timeout=settings.guestkey_callback_timeout_seconds) as http:
            response = await http.post(url, content=raw.encode(), headers=headers)
    except httpx.HTTPError as error:
        log.warning(
            "callbacks.unreachable", event_type=body.get("type"), error=type(error).__name__
        )
        raise CallbackNotAccepted(f"callback unreachable: {type(error).__name__}") from error
    if not 200 <= response.status_code < 300:
        log.warning("callbacks.refused", event_type=body.get("type"), status=response.status_code)
        raise CallbackNotAccepted(f"callback answered {response.status_code}")
    log.info("callbacks.sent", event_type=body.get("type"), message_id=message_id)
