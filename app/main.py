"""The ASGI app: `create_app(settings)` builds it; nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import structlog
from fastapi import FastAPI

from app import health
from app.config import ConfigurationError, Settings
from app.console.router import mount as mount_console
from app.docs import install_docs
from app.doors.router import router as doors_router
from app.errors import install_error_handlers
from app.guests.router import router as guests_router
from app.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.openapi import install_openapi
from app.reservations.router import router as reservations_router
from app.runtime import open_runtime
from app.webhooks.router import router as webhooks_router
from app.worker.app import run_supervised_worker

log = structlog.get_logger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    run_worker: bool = True,
    on_refusal: Callable[[str], None] | None = None,
) -> FastAPI:
    """`on_refusal` hears why guestkey cannot start as configured (`guestkey serve` exits)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        concurrency = settings.guestkey_worker_concurrency if run_worker else 0
        async with contextlib.AsyncExitStack() as stack:
            try:
                runtime = await stack.enter_async_context(
                    open_runtime(
                        settings,
                        database_url=database_url,
                        webhook_target=app,
                        worker_concurrency=concurrency,
                    )
                )
            except ConfigurationError as error:
                if on_refusal is not None:
                    on_refusal(str(error))
                raise
            app.state.runtime = runtime
            worker = None
            if run_worker:
                worker = asyncio.create_task(
                    run_supervised_worker(runtime, concurrency=concurrency),
                    name="guestkey-worker",
                )
            log.info("guestkey.started", sandbox=settings.sandbox, worker=run_worker)
            try:
                yield
            finally:
                if worker is not None:
                    worker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker
                log.info("guestkey.stopped")

    app = FastAPI(
        title="guestkey",
        version="0.1.0",
        summary="Door codes for guests: reservations in, Seam access grants and PIN codes out.",
        lifespan=lifespan,
        docs_url=None,  # served from local files by install_docs
        redoc_url=None,
        redirect_slashes=False,  # a key that ends in "/" is not another route: 404, not 307
    )
    install_error_handlers(app)
    # Routes are matched in order: Seam's webhooks, the busiest path, first.
    app.include_router(webhooks_router)
    app.include_router(health.router)
    app.include_router(reservations_router)
    app.include_router(doors_router)
    app.include_router(guests_router)  # the guest's page, /g/{token}
    mount_console(app)  # the operator console, matched after the API
    install_docs(app)
    install_openapi(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.guestkey_max_body_bytes)
    app.add_middleware(RequestContextMiddleware)
    return app
