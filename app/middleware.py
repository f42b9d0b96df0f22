"""Pure-ASGI middleware: request ids, access log and metrics, and body size limits."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

log = structlog.get_logger("app.http")

REQUEST_ID_HEADER = "x-request-id"
WEBHOOK_MAX_BODY_BYTES = 1024 * 1024


class RequestContextMiddleware:
    """Binds a request id to every log line of the request and echoes it in `X-Request-ID`;
    counts and times requests by route template (never by raw path, which holds keys)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_REQUEST_SECONDS.labels(scope["method"], route).observe(elapsed)
            if route not in ("/healthz", "/metrics"):
                log.info(
                    "http.request",
                    method=scope["method"],
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.clear_contextvars()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = bytes(value).decode("latin-1")[:64]
            if candidate.replace("-", "").isalnum():
                return candidate
    return None


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path: object = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class BodyLimitMiddleware:
    """413 for bodies above the limit (1 MiB for Seam webhooks), before the app reads them."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = (
            WEBHOOK_MAX_BODY_BYTES
            if scope["path"].startswith("/webhooks/")
            else self.max_body_bytes
        )
        declared = _content_length(scope)
        if declared is not None:
            # The server enforces Content-Length itself; the declared size is enough.
            if declared > limit:
                await _too_large(send, limit)
                return
            await self.app(scope, receive, send)
            return
        # Chunked body: read it here, up to the limit, then hand it on.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {"detail": f"request body is larger than {limit} bytes", "code": "body_too_large"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
