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
from app.seam.fake.webhooks import WebhookSender

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
    """

    def __init__(
        self,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        auto_issue: bool = True,
        issue_delay: float = 0.05,
        webhook_retry_schedule: tuple[float, ...] = (0.5, 1, 2, 5, 10),
    ) -> None:
        self.webhooks = WebhookSender(
            url=webhook_url,
            secret=webhook_secret,
            transport=webhook_transport,
            retry_schedule=webhook_retry_schedule,
        )
        self.state = FakeSeamState(on_event=self._on_event)
        self.auto_issue = auto_issue
        self.issue_delay = issue_delay
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

    # --- background work ---------------------------------------------------------------------

    def schedule_auto_issue(self, access_method_ids: Iterable[str]) -> None:
        if self.auto_issue:
            self._spawn(self._issue_later(list(access_method_ids), self.issue_delay))

    async def _issue_later(self, access_method_ids: list[str], delay: float) -> None:
        await asyncio.sleep(delay)
        for access_method_id in access_method_ids:
            method = self.state.access_methods.get(access_method_id)
            if method is not None:  # deleted meanwhile
                self.state.issue(method)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, within: float = 5.0) -> bool:
        """Wait until no auto-issue timer or webhook delivery is pending; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while pending := self._tasks | self.webhooks.pending:
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
        await self.webhooks.aclose()

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.failures.clear()
        self.webhooks.clear()
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
        unauthorized = check_api_key(request)
        if unauthorized is not None:
            return unauthorized.response()
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


def check_api_key(request: Request) -> FakeSeamError | None:
    authorization = request.headers.get("authorization")
    if authorization is None:
        return FakeSeamError(401, "unauthorized", "No Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip().startswith("seam_"):
        return FakeSeamError(401, "unauthorized", "API key not found")
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
) -> None:
    """Run the fake Seam as an HTTP server (``guestkey fake-seam``) until interrupted."""
    import uvicorn

    fake = FakeSeam(webhook_url=webhook_url, webhook_secret=webhook_secret)
    if webhook_url is not None and webhook_secret is None:
        # The generated secret is a throwaway test value; the receiver must be told it.
        print(f"fake-seam: signing webhooks to {webhook_url} with {fake.webhook_secret}")
    uvicorn.run(fake.app, host=host, port=port)
