"""The inbox: store each verified delivery once and enqueue its processing with it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, cast

import structlog
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.webhooks.events import HANDLED_EVENTS, UNHANDLED
from app.webhooks.models import SeamWebhook

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Intake:
    outcome: str  # accepted | ignored | duplicate | rejected
    reason: str | None = None


def redact(payload: dict[str, Any]) -> dict[str, Any]:
    """The inbox keeps events, not PIN codes: Seam may put the code in an event, and guestkey
    re-reads it from Seam anyway, then stores it encrypted."""
    if "code" not in payload:
        return payload
    return {**payload, "code": None if payload["code"] is None else "[redacted]"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _storable(payload: Any) -> bool:
    """PostgreSQL's jsonb takes no NUL character and no lone surrogate."""
    text = json.dumps(payload, ensure_ascii=False)
    if "\\u0000" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_text(body: bytes) -> str:
    return body.decode("utf-8", "replace").replace("\x00", "\\u0000")


def parse_event(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(event, None) for a Seam event; (payload or None, why not) otherwise."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant)  # NaN, Infinity: not JSON
    except ValueError:
        return None, "not_json"
    # An ASCII body without NUL bytes is parsed as UTF-8 (NUL bytes are how the parser tells
    # UTF-16 and UTF-32), where a NUL or a lone surrogate can only come from a `\u` escape:
    # such bodies, nearly all, skip the full check.
    plain = body.isascii() and b"\x00" not in body and b"\\u" not in body
    if not plain and not _storable(payload):
        return None, "unstorable_json"
    if not isinstance(payload, dict):
        return None, "not_an_object"
    event_id, event_type = payload.get("event_id"), payload.get("event_type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        return payload, "not_a_seam_event"
    return payload, None


# One Core statement with bound parameters, compiled once: the webhook hot path skips the
# ORM's bulk-insert machinery and per-request `values()` coercion.
_INBOX = cast(Table, SeamWebhook.__table__)
_INSERT = insert(_INBOX).on_conflict_do_nothing().returning(_INBOX.c.id)


async def store_delivery(session: AsyncSession, *, svix_id: str, body: bytes) -> Intake:
    from app.webhooks.flows import enqueue_handling, find_reservation

    payload, problem = parse_event(body)
    row: dict[str, Any] = {"id": uuid.uuid4(), "svix_id": svix_id}
    handled = False
    route = None
    if problem is None:
        assert payload is not None
        handled = payload["event_type"] in HANDLED_EVENTS
        if handled:
            route = await find_reservation(session, payload)
        row |= {
            "event_id": payload["event_id"],
            "event_type": payload["event_type"],
            "payload": redact(payload),
            "raw_body": None,
            "outcome": ("routed" if route else "received") if handled else "ignored",
            "outcome_reason": None if handled else UNHANDLED,
            "processed_at": None if handled and route is None else utcnow(),
        }
    else:
        row |= {
            "event_id": None,
            "event_type": None,
            "payload": redact(payload) if payload is not None else None,
            "raw_body": None if payload is not None else storable_text(body),
            "outcome": "rejected",
            "outcome_reason": problem,
            "processed_at": utcnow(),
        }
    inserted = await session.scalar(_INSERT, row)
    if inserted is None:
        return Intake("duplicate")
    if problem is not None:
        log.error("webhooks.seam.rejected", svix_id=svix_id, reason=problem)
        return Intake("rejected", problem)
    if not handled:
        return Intake("ignored")  # stored for the record; no job, nothing to do

    await enqueue_handling(session, webhook_id=inserted, route=route)
    return Intake("accepted")
