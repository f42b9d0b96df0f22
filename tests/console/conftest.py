"""The console's tests run guestkey and the fake Seam over real HTTP (tests/http_stack.py);
the browser tests drive them with Chromium (tests/browser.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.clients.service import ensure_clients
from app.console import service
from app.db import utcnow
from app.runtime import Runtime
from tests.browser import Browser, browser_installed, open_browser
from tests.http_stack import app, client, fake_seam, fake_seam_server

__all__ = ["app", "browser_installed", "client", "fake_seam", "fake_seam_server"]


async def make_operator(
    runtime: Runtime, email: str, *, client: str | None = None, one_time: bool = False
) -> str:
    """Create an operator as `guestkey operators create` does; returns its password. Unless
    `one_time`, the operator is taken to have chosen it already (no first-sign-in detour)."""
    async with runtime.sessionmaker() as session:
        if client is not None:
            await ensure_clients(session, names={client})
        operator, password = await service.create_operator(session, email=email, client_name=client)
        if not one_time:
            operator.password_chosen_at = utcnow()
        await session.commit()
    return password


@pytest.fixture
async def browser(app: FastAPI, browser_installed: None) -> AsyncIterator[Browser]:
    async for opened in open_browser(app.state.url):
        yield opened


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


async def signed_in_http(base_url: str, email: str, password: str) -> httpx.AsyncClient:
    """An HTTP client holding a console session (the caller closes it)."""
    http = httpx.AsyncClient(base_url=base_url)
    form = await http.get("/console/login")
    response = await http.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": csrf_token(form.text)},
    )
    assert response.status_code == 303, response.text
    return http
