"""guestkey's webhook at Seam: registered for exactly the event types guestkey acts on
(`guestkey seam connect`), and checked (`guestkey doctor`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from app.seam.client import SeamGateway, Webhook
from app.webhooks.events import ACTED_ON_EVENTS

WEBHOOK_PATH = "/webhooks/seam"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def subscribed_event_types() -> list[str]:
    """The events of the codes and grants, and those that change the door list: a door added,
    renamed, gone, offline or given a keypad is known when Seam sends it, not only at the
    reconciler's next catch-up."""
    return sorted(ACTED_ON_EVENTS)


def webhook_url_problem(url: str) -> str | None:
    """Why Seam could not deliver to `url`, or None. Seam posts only to public HTTPS; plain
    HTTP is accepted for a loopback host, where a local fake Seam stands in for Seam."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{url!r} is not a URL: use https://HOST{WEBHOOK_PATH}"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return f"{url} is plain HTTP: Seam delivers only to a public https:// URL"
    if parts.path.rstrip("/") != WEBHOOK_PATH:
        return f"{url} does not end in {WEBHOOK_PATH}, where guestkey receives Seam's events"
    return None


def _same_url(left: str, right: str) -> bool:
    return left.rstrip("/") == right.rstrip("/")


async def find_webhook(seam: SeamGateway, *, url: str) -> Webhook | None:
    for webhook in await seam.list_webhooks():
        if _same_url(webhook.url, url):
            if webhook.secret is None:  # a list may leave the secret out; a get has it
                return await seam.get_webhook(webhook.webhook_id)
            return webhook
    return None


@dataclass(frozen=True)
class Connected:
    webhook: Webhook
    outcome: Literal["created", "updated", "unchanged"]


async def connect_webhook(seam: SeamGateway, *, url: str) -> Connected:
    """Register `url` for guestkey's event types, or bring the webhook already registered for
    it to exactly those types: running it again never makes a second webhook."""
    event_types = subscribed_event_types()
    existing = await find_webhook(seam, url=url)
    if existing is None:
        created = await seam.create_webhook(url=url, event_types=event_types)
        return Connected(created, "created")
    if sorted(existing.event_types) == event_types:
        return Connected(existing, "unchanged")
    await seam.update_webhook_event_types(existing.webhook_id, event_types=event_types)
    return Connected(await seam.get_webhook(existing.webhook_id), "updated")


def event_types_problem(webhook: Webhook) -> str | None:
    """What is wrong with the webhook's subscription for guestkey, or None."""
    if "*" in webhook.event_types or not webhook.event_types:
        return None  # every event: guestkey's are among them (the others are stored, ignored)
    missing = sorted(ACTED_ON_EVENTS.difference(webhook.event_types))
    if missing:
        return f"it does not send {', '.join(missing)}"
    return None
