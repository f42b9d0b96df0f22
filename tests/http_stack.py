"""guestkey and the fake Seam each behind a real uvicorn server on a loopback port, in the
test's own event loop: real HTTP both ways (Seam calls, signed webhooks, the API), while the
test still runs the jobs itself and reads both sides' state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI

from app.main import create_app
from app.runtime import Runtime
from app.seam.fake import FakeSeam
from tests.conftest import API_KEYS, WEBHOOK_SECRET, make_settings
from tests.e2e.processes import free_port


@contextlib.asynccontextmanager
async def serving(app: Any, *, lifespan: str = "on") -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan=lifespan, log_config=None)
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def fake_seam_server() -> AsyncIterator[tuple[FakeSeam, str]]:
    fake = FakeSeam(webhook_secret=WEBHOOK_SECRET)
    async with serving(fake.app, lifespan="off") as url:
        yield fake, url
    await fake.aclose()


@pytest.fixture
def fake_seam(fake_seam_server: tuple[FakeSeam, str]) -> FakeSeam:
    return fake_seam_server[0]


@pytest.fixture
async def app(
    clean_database: str,
    settings_overrides: dict[str, Any],
    fake_seam_server: tuple[FakeSeam, str],
) -> AsyncIterator[FastAPI]:
    fake, seam_url = fake_seam_server
    settings = make_settings(
        **settings_overrides,
        GUESTKEY_SANDBOX=False,
        GUESTKEY_ALLOW_FAKE_SEAM=True,
        seam_api_key="seam_test_key",
        seam_endpoint=seam_url,
        guestkey_encryption_key=Fernet.generate_key().decode(),
    )
    application = create_app(settings, database_url=clean_database, run_worker=False)
    async with serving(application) as guestkey_url:
        runtime: Runtime = application.state.runtime
        runtime.fake_seam = fake  # so settle() waits for the fake's webhooks too
        fake.state.calls.clear()  # the start's workspace check is not the test's
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{seam_url}/_fake/webhooks",
                json={"enabled": True, "url": f"{guestkey_url}/webhooks/seam"},
            )
            response.raise_for_status()
        application.state.url = guestkey_url
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=app.state.url, headers={"Authorization": f"Bearer {API_KEYS['alpha']}"}
    ) as http:
        yield http
