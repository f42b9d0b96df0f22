"""Signed Seam deliveries for tests, made with `svix` itself."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from svix.webhooks import Webhook

SECRET = "whsec_" + base64.b64encode(b"guestkey-test-webhook-secret-32!").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-webhook-secret-of-32byte").decode()


def seam_event(event_type: str = "device.connected", **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "workspace_id": str(uuid.uuid4()),
        "created_at": now,
        "occurred_at": now,
        **fields,
    }


def signed(
    body: bytes | dict[str, Any],
    *,
    secret: str = SECRET,
    message_id: str | None = None,
    at: datetime | None = None,
    prefix: str = "svix",
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(message_id, at, raw.decode())
    return raw, {
        f"{prefix}-id": message_id,
        f"{prefix}-timestamp": str(int(at.timestamp())),
        f"{prefix}-signature": signature,
        "content-type": "application/json",
    }


def shifted(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
