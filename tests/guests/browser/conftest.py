"""The guest's page in a real browser: guestkey and the fake Seam over real HTTP
(tests/http_stack.py), Chromium driven by Selenium (tests/browser.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from tests.browser import Browser, browser_installed, open_browser
from tests.http_stack import app, client, fake_seam, fake_seam_server

__all__ = ["app", "browser_installed", "client", "fake_seam", "fake_seam_server"]

# A phone (the page's first reader) and a laptop.
VIEWPORTS = [(390, 844), (1280, 800)]


@pytest.fixture(params=VIEWPORTS, ids=lambda size: f"{size[0]}x{size[1]}")
def viewport(request: pytest.FixtureRequest) -> tuple[int, int]:
    size: tuple[int, int] = request.param
    return size


@pytest.fixture
async def browser(
    app: FastAPI, browser_installed: None, viewport: tuple[int, int]
) -> AsyncIterator[Browser]:
    async for opened in open_browser(app.state.url):
        width, height = viewport
        await opened._call(
            opened.driver.execute_cdp_cmd,
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )
        yield opened
