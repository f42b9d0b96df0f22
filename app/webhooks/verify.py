"""Svix (Standard Webhooks) signature verification of Seam's deliveries.

`svix` does the cryptography (HMAC-SHA256, constant-time compare, ±5 min tolerance, several
space-separated signatures). This class adds what an endpoint needs around it: header names
in either family (`svix-*`, `webhook-*`) and any case, several secrets during a rotation, and
a clear split of failures into malformed requests (400) and failed authentication (401).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from svix.webhooks import Webhook, WebhookVerificationError

from app.errors import GuestkeyError, Unauthorized

MAX_MESSAGE_ID_LENGTH = 256
_SIGNATURE = re.compile(r"^v\d+[a-z]*,[A-Za-z0-9+/=_-]+$")


class MalformedWebhook(GuestkeyError):
    status_code = 400
    code = "malformed_webhook"


class UnauthenticWebhook(Unauthorized):
    code = "invalid_signature"
    headers: ClassVar[dict[str, str]] = {}  # no Bearer challenge: Svix does not answer one


@dataclass(frozen=True)
class VerifiedDelivery:
    message_id: str
    body: bytes


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(f"svix-{name}") or headers.get(f"webhook-{name}")


class WebhookVerifier:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is required")
        self._webhooks = [Webhook(secret) for secret in secrets]

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedDelivery:
        """Raise MalformedWebhook (400) or UnauthenticWebhook (401), or return the delivery."""
        lowered = {name.lower(): value for name, value in headers.items()}
        message_id = _header(lowered, "id")
        timestamp = _header(lowered, "timestamp")
        signature = _header(lowered, "signature")
        missing = [
            name
            for name, value in (
                ("id", message_id),
                ("timestamp", timestamp),
                ("signature", signature),
            )
            if not value
        ]
        if missing:
            raise MalformedWebhook(
                f"missing webhook header(s): {', '.join('svix-' + name for name in missing)}",
                reason="missing_headers",
            )
        assert message_id is not None and timestamp is not None and signature is not None
        if len(message_id) > MAX_MESSAGE_ID_LENGTH:
            raise MalformedWebhook("svix-id is too long", reason="garbled_headers")
        if not timestamp.strip().isdigit():
            raise MalformedWebhook(
                "svix-timestamp is not a Unix timestamp", reason="garbled_headers"
            )
        if not any(_SIGNATURE.match(part) for part in signature.split()):
            raise MalformedWebhook(
                "svix-signature is not a list of v1,<base64>", reason="garbled_headers"
            )

        # Only well-formed entries go on: one stray part must not hide a valid signature.
        canonical = {
            "webhook-id": message_id,
            "webhook-timestamp": timestamp.strip(),
            "webhook-signature": " ".join(p for p in signature.split() if _SIGNATURE.match(p)),
        }
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MalformedWebhook("body is not UTF-8", reason="garbled_body") from error
        last_error = "no matching signature"
        for webhook in self._webhooks:
            try:
                webhook.verify(body, canonical)
            except json.JSONDecodeError:
                # svix parses the body only after a signature matched: authentic, not JSON.
                return VerifiedDelivery(message_id=message_id, body=body)
            except WebhookVerificationError as error:
                last_error = str(error)
                if "timestamp" in last_error.lower():
                    break  # the same for every secret
                continue
            except ValueError:  # undecodable base64 or body that is not UTF-8
                continue
            return VerifiedDelivery(message_id=message_id, body=body)
        reason = (
            "stale_timestamp"
            if "too old" in last_error or "too new" in last_error
            else "bad_signature"
        )
        raise UnauthenticWebhook(f"webhook not verified: {last_error}", reason=reason)
