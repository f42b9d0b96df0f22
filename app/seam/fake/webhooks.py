"""Svix-style webhook delivery for the fake Seam.

Each event becomes one *message*: a ``msg_…`` id and the event's JSON as the raw body. Every
delivery attempt POSTs that body with ``svix-id``, ``svix-timestamp`` and ``svix-signature``
(signed with ``svix.webhooks.Webhook(secret).sign``, a fresh timestamp per attempt). A non-2xx
answer or a connection error is retried after each delay of the retry schedule — like Svix,
but in seconds instead of hours. ``resend`` replays a message with the same ``svix-id`` and body,
as Svix's manual replay does. Deliveries run as background tasks; :meth:`drain` waits for them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from svix.webhooks import Webhook

DELIVERY_TIMEOUT_SECONDS = 15.0


def generate_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(14)


@dataclass
class WebhookMessage:
    svix_id: str
    event: dict[str, Any]
    body: str
    url: str
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    delivered: bool = False
    attempted_at: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "svix_id": self.svix_id,
            "event_id": self.event.get("event_id"),
            "event_type": self.event.get("event_type"),
            "event": self.event,
            "url": self.url,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "delivered": self.delivered,
            "attempted_at": list(self.attempted_at),
        }


class WebhookSender:
    """Signs and delivers events to one endpoint, keeping a log of every message."""

    def __init__(
        self,
        *,
        url: str | None,
        secret: str | None,
        transport: httpx.AsyncBaseTransport | None,
        retry_schedule: tuple[float, ...],
    ) -> None:
        self.url = url
        self.secret = secret or generate_secret()
        self.enabled = True
        self.retry_schedule = retry_schedule
        self.messages: dict[str, WebhookMessage] = {}
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        return self.enabled and self.url is not None

    def configure(self, *, enabled: bool, url: str | None, secret: str | None) -> None:
        self.enabled = enabled
        if url is not None:
            self.url = url
        if secret is not None:
            self.secret = secret

    def send(self, event: dict[str, Any]) -> WebhookMessage | None:
        """Log the event as a new message and deliver it in the background (when active)."""
        if not self.active or self.url is None:
            return None
        message = WebhookMessage(
            svix_id=new_message_id(), event=event, body=json.dumps(event), url=self.url
        )
        self.messages[message.svix_id] = message
        try:
            self._spawn(self._deliver(message, self.retry_schedule))
        except RuntimeError:  # no running event loop: a state change made outside the app
            message.last_error = "not sent: no running event loop"
        return message

    async def resend(self, svix_id: str) -> WebhookMessage:
        """Replay a message now (same id and body); retries of a failure go on in the background."""
        message = self.messages[svix_id]
        if self.url is not None:
            message.url = self.url
        if not await self._attempt(message):
            self._spawn(self._deliver(message, self.retry_schedule, first_delay=None))
        return message

    async def _deliver(
        self, message: WebhookMessage, schedule: tuple[float, ...], first_delay: float | None = 0
    ) -> None:
        delays = ([first_delay] if first_delay is not None else []) + list(schedule)
        for delay in delays:
            await asyncio.sleep(delay)
            if await self._attempt(message):
                return

    async def _attempt(self, message: WebhookMessage) -> bool:
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "svix-id": message.svix_id,
            "svix-timestamp": str(int(now.timestamp())),
            "svix-signature": Webhook(self.secret).sign(message.svix_id, now, message.body),
        }
        message.attempts += 1
        message.attempted_at.append(now.isoformat())
        try:
            response = await self._http().post(message.url, content=message.body, headers=headers)
        except httpx.HTTPError as error:
            message.last_status, message.last_error = None, f"{type(error).__name__}: {error}"
            return False
        message.last_status = response.status_code
        message.last_error = None if response.is_success else response.text[:500]
        message.delivered = message.delivered or response.is_success
        return response.is_success

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport, timeout=DELIVERY_TIMEOUT_SECONDS
            )
        return self._client

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coroutine.close()
            raise
        task = loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def log(self) -> list[dict[str, Any]]:
        return [message.to_json() for message in self.messages.values()]

    def clear(self) -> None:
        self.cancel()
        self.messages.clear()

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    @property
    def pending(self) -> set[asyncio.Task[None]]:
        return set(self._tasks)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        self.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


@dataclass
class ApiWebhook:
    """A webhook made through ``webhooks/create``: the workspace's events of its
    ``event_types`` (``*`` for all), signed with its own secret."""

    webhook_id: str
    event_types: list[str]
    sender: WebhookSender

    def wants(self, event_type: str) -> bool:
        return "*" in self.event_types or event_type in self.event_types
