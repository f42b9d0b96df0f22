"""``FakeSeam``: the fake Seam API as an ASGI app, its background work and its fault injection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.seam.fake.control import FailParams, build_control_router
from app.seam.fake.errors import FakeSeamError, default_error_type
from app.seam.fake.router import build_seam_router
from app.seam.fake.state import FakeSeamState
from app.seam.fake.webhooks import ApiWebhook, WebhookSender

CONTROL_PREFIX = "/_fake"
# FastAPI's own pages are not Seam endpoints: no API key, not in the call log.
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
CallNext = Callable[[Request], Awaitable[Response]]


@dataclass
class FailureRule:
    """The next ``remaining`` Seam calls to ``endpoint`` (any, when None) misbehave.

    ``timeout_seconds`` delays the answer first (a slow Seam). ``status`` 0 then answers
    normally; any other status answers the error envelope (``error_type`` or a default per
    status, ``Retry-After`` when ``retry_after`` is set). With ``after_success`` the operation is
    performed before the error is answered: a response lost on the way back.
    """

    remaining: int
    status: int
    error_type: str
    message: str
    endpoint: str | None = None
    retry_after: float | None = None
    after_success: bool = False
    delay: float = 0.0

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (self.endpoint is None or self.endpoint == path)

    def error(self) -> FakeSeamError:
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = f"{self.retry_after:g}"
        return FakeSeamError(self.status, self.error_type, self.message, headers=headers)

    def to_json(self) -> dict[str, Any]:
        return {
            "remaining": self.remaining,
            "status": self.status,
            "error_type": self.error_type,
            "endpoint": self.endpoint,
            "retry_after": self.retry_after,
            "after_success": self.after_success,
            "timeout_seconds": self.delay,
        }


class FakeSeam:
    """An in-memory Seam workspace served as an ASGI app (``fake.app``).

    Run the official SDK against it with
    ``AsyncSeam(api_key="seam_fake_key", endpoint="http://fake-seam",
    httpx_options={"transport": httpx.ASGITransport(fake.app)})``.

    ``api_key`` set: only that key is accepted (else any ``seam_…`` key). ``issue_delay``: seconds
    from a create to the code being issued (short by default, so the sandbox feels instant).
    ``webhook_url`` receives every event, like the webhook of a Seam workspace; more webhooks
    can be made through ``webhooks/create``.
    """

    def __init__(
        self,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        auto_issue: bool = True,
        issue_delay: float = 0.05,
        webhook_retry_schedule: tuple[float, ...] = (0.5, 1, 2, 5, 10),
        api_key: str | None = None,
    ) -> None:
        self.webhooks = WebhookSender(
            url=webhook_url,
            secret=webhook_secret,
            transport=webhook_transport,
            retry_schedule=webhook_retry_schedule,
        )
        self.api_webhooks: dict[str, ApiWebhook] = {}
        self._retired_senders: list[WebhookSender] = []
        self._webhook_transport = webhook_transport
        self.state = FakeSeamState(on_event=self._on_event)
        self.auto_issue = auto_issue
        self.issue_delay = issue_delay
        self.api_key = api_key
        self.key_forbidden = False
        self.failures: list[FailureRule] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = build_app(self)

    @property
    def webhook_secret(self) -> str:
        return self.webhooks.secret

    @property
    def webhook_url(self) -> str | None:
        return self.webhooks.url

    def _on_event(self, event: dict[str, Any]) -> None:
        self.webhooks.send(event)
        for webhook in self.api_webhooks.values():
            if webhook.wants(event["event_type"]):
                webhook.sender.send(event)

    # --- webhooks made through the API -------------------------------------------------------

    def create_webhook(self, url: str, event_types: list[str]) -> ApiWebhook:
        sender = WebhookSender(
            url=url,
            secret=None,
            transport=self._webhook_transport,
            retry_schedule=self.webhooks.retry_schedule,
        )
        webhook = ApiWebhook(str(uuid.uuid4()), list(event_types), sender)
        self.api_webhooks[webhook.webhook_id] = webhook
        return webhook

    def api_webhook(self, webhook_id: str) -> ApiWebhook:
        if webhook_id not in self.api_webhooks:
            raise FakeSeamError(404, "webhook_not_found", "Webhook not found")
        return self.api_webhooks[webhook_id]

    def delete_webhook(self, webhook_id: str) -> None:
        webhook = self.api_webhooks.pop(self.api_webhook(webhook_id).webhook_id)
        webhook.sender.cancel()
        self._retired_senders.append(webhook.sender)

    def _senders(self) -> list[WebhookSender]:
        api_senders = [webhook.sender for webhook in self.api_webhooks.values()]
        return [self.webhooks, *api_senders, *self._retired_senders]

    # --- background work ---------------------------------------------------------------------

    def schedule_auto_issue(self, access_method_ids: Iterable[str]) -> None:
        if self.auto_issue:
            self._spawn(self._issue_later(list(access_method_ids), self.issue_delay))

    async def _issue_later(self, access_method_ids: list[str], delay: float) -> None:
        await asyncio.sleep(delay)
        for access_method_id in access_method_ids:
            method = self.state.access_methods.get(access_method_id)
            if method is not None:  # deleted meanwhile
                self.state.issue_when_ready(method)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, within: float = 5.0) -> bool:
        """Wait until no auto-issue timer or webhook delivery is pending; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while pending := self._tasks.union(*(sender.pending for sender in self._senders())):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(pending, timeout=remaining)
        return True

    async def aclose(self) -> None:
        """Cancel auto-issue timers and webhook retries; close the webhook HTTP client."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sender in self._senders():
            await sender.aclose()

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.failures.clear()
        self.webhooks.clear()
        for webhook_id in list(self.api_webhooks):
            self.delete_webhook(webhook_id)
        self.key_forbidden = False
        self.state.reset()

    # --- fault injection ---------------------------------------------------------------------

    def add_failure(self, params: FailParams) -> FailureRule:
        rule = FailureRule(
            remaining=params.count,
            status=params.status,
            error_type=params.error_type or default_error_type(params.status),
            message=params.message or f"Simulated failure (HTTP {params.status})",
            endpoint=params.endpoint.rstrip("/") if params.endpoint else None,
            retry_after=params.retry_after,
            after_success=params.after_success,
            delay=params.timeout_seconds or 0.0,
        )
        self.failures.append(rule)
        return rule

    def take_failure(self, path: str) -> FailureRule | None:
        for rule in self.failures:
            if rule.matches(path):
                rule.remaining -= 1
                if rule.remaining == 0:
                    self.failures.remove(rule)
                return rule
        return None

    async def handle_seam_call(self, request: Request, call_next: CallNext) -> Response:
        refused = check_api_key(request, self.api_key, forbidden=self.key_forbidden)
        if refused is not None:
            return refused.response()
        rule = self.take_failure(request.url.path.rstrip("/"))
        if rule is None:
            return await call_next(request)
        if rule.delay:
            await request.body()  # like a real server: a request read is carried out
            await asyncio.sleep(rule.delay)
        if rule.status == 0:
            return await call_next(request)
        if rule.after_success:
            lost = await call_next(request)
            await discard_body(lost)
        return rule.error().response()


def check_api_key(
    request: Request, api_key: str | None, *, forbidden: bool
) -> FakeSeamError | None:
    """401 for a missing or unknown key (only ``api_key`` is known when set, else any
    ``seam_…`` key); 403 for a known key the workspace no longer lets in."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return FakeSeamError(401, "unauthorized", "No Authorization header")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    known = token == api_key if api_key is not None else token.startswith("seam_")
    if scheme.lower() != "bearer" or not known:
        return FakeSeamError(401, "unauthorized", "Unauthorized")
    if forbidden:
        return FakeSeamError(403, "forbidden", "This API key may not access this workspace")
    return None


async def discard_body(response: Response) -> None:
    body_iterator = getattr(response, "body_iterator", None)
    if body_iterator is not None:
        async for _ in body_iterator:
            pass


def build_app(fake: FakeSeam) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await fake.aclose()

    app = FastAPI(title="Fake Seam", lifespan=lifespan)
    app.state.fake = fake
    app.include_router(build_seam_router(fake))
    app.include_router(build_control_router(fake))

    @app.exception_handler(FakeSeamError)
    async def seam_error(_: Request, error: FakeSeamError) -> Response:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> Response:
        error_type = {404: "endpoint_not_found", 405: "method_not_allowed"}.get(
            error.status_code, default_error_type(error.status_code)
        )
        return FakeSeamError(error.status_code, error_type, str(error.detail)).response()

    @app.middleware("http")
    async def seam_middleware(request: Request, call_next: CallNext) -> Response:
        if request.url.path.startswith(CONTROL_PREFIX) or request.url.path in DOCS_PATHS:
            response = await call_next(request)
        else:
            response = await fake.handle_seam_call(request, call_next)
            fake.state.record_call(request.method, request.url.path, response.status_code)
        response.headers["seam-request-id"] = str(uuid.uuid4())
        return response

    return app


def create_fake_seam_app(**options: Any) -> FastAPI:
    """A fresh fake's ASGI app (``app.state.fake`` is the :class:`FakeSeam`)."""
    return FakeSeam(**options).app


def serve(
    host: str = "127.0.0.1",
    port: int = 8090,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    issue_delay: float | None = None,
    api_key: str | None = None,
) -> None:
    """Run the fake Seam as an HTTP server (``guestkey fake-seam``) until interrupted."""
    import uvicorn

    options: dict[str, Any] = {"issue_delay": issue_delay} if issue_delay is not None else {}
    fake = FakeSeam(
        webhook_url=webhook_url, webhook_secret=webhook_secret, api_key=api_key, **options
    )
    if webhook_url is not None and webhook_secret is None:
        # The generated secret is a throwaway test value; the receiver must be told it.
        print(f"fake-seam: signing webhooks to {webhook_url} with {fake.webhook_secret}")
    uvicorn.run(fake.app, host=host, port=port)
