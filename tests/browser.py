"""A real browser for tests of guestkey's pages: Debian's Chromium driven by Selenium.

`scripts/ensure-browser.sh` installs Chromium and chromedriver when they are missing (`make
test` runs it first; the `browser` fixture runs it too, for a bare `pytest`). The server under
test runs in the test's own event loop (tests/http_stack.py), so every call into the browser
is made from a thread: a page load must not block the loop that serves it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = Path(os.environ.get("TEST_OUTPUT_DIR", REPO_ROOT / "test-output"))
SCREENSHOTS_DIR = OUTPUT_DIR / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)

T = TypeVar("T")
# What Chromium says of an element read while the browser leaves its page.
NODE_LEFT_BEHIND = "does not belong to the document"


def ensure_browser() -> None:
    """Install the browser when it is missing; fail (never skip) when that is not possible."""
    script = REPO_ROOT / "scripts" / "ensure-browser.sh"
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"the browser is not available:\n{result.stdout}{result.stderr}")


def start_chromium(user_data_dir: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


class Browser:
    """One Chromium with a fresh profile, pointed at one server. Methods are async; each runs
    the WebDriver call in a thread."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(function, *args)

    async def open(self, path: str) -> None:
        await self._call(self.driver.get, self.base_url + path)

    async def path(self) -> str:
        url: str = await self._call(lambda: self.driver.current_url)
        return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"

    async def find(self, css: str) -> WebElement:
        return await self._call(self.driver.find_element, By.CSS_SELECTOR, css)

    async def find_all(self, css: str) -> list[WebElement]:
        return await self._call(self.driver.find_elements, By.CSS_SELECTOR, css)

    async def text(self, css: str = "body") -> str:
        element = await self.find(css)
        text: str = await self._call(lambda: element.text)
        return text

    async def fill(self, css: str, value: str) -> None:
        element = await self.find(css)
        await self._call(element.clear)
        await self._call(element.send_keys, value)

    async def click(self, css: str) -> None:
        element = await self.find(css)
        await self._call(element.click)

    async def click_link(self, text: str) -> None:
        element = await self._call(self.driver.find_element, By.LINK_TEXT, text)
        await self._call(element.click)

    async def run_script(self, script: str, *args: Any) -> Any:
        return await self._call(self.driver.execute_script, script, *args)

    async def wait_for_text(
        self, css: str, pattern: str, *, timeout: float = 20, present: bool = True
    ) -> str:
        """Wait until the element's text matches `pattern` (or, `present=False`, no longer does)."""
        deadline = time.monotonic() + timeout
        text = ""
        error: WebDriverException | None = None
        while time.monotonic() < deadline:
            read = await self._call(self._current_text, css)
            if isinstance(read, WebDriverException):
                error = read  # read again: neither a match nor its absence
            else:
                text, error = read, None
                if bool(re.search(pattern, text)) == present:
                    return text
            await asyncio.sleep(0.2)
        failure = f"{css} text {'never matched' if present else 'kept'} {pattern!r}: {text!r}"
        if error is not None:
            failure += f" (the last read failed: {error.msg})"
        raise AssertionError(failure)

    def _current_text(self, css: str) -> str | WebDriverException:
        """The text of every matching element, read in one go; or, when the page changed
        between finding and reading, the error that says so, for the caller to read again:
        a part of the page that htmx swaps in (a stale element) or a page the browser leaves
        (Chromium: an "unknown error" about a node that no longer belongs to the document)."""
        try:
            elements = self.driver.find_elements(By.CSS_SELECTOR, css)
            return " ".join(element.text for element in elements)
        except WebDriverException as error:
            left_behind = isinstance(error, StaleElementReferenceException) or (
                NODE_LEFT_BEHIND in (error.msg or "")
            )
            if not left_behind:
                raise  # a browser gone or a bad selector fails the test at once
            return error

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS_DIR / f"{name}.png"
        await self._call(self.driver.save_screenshot, str(path))
        return path


@pytest.fixture(scope="session")
def browser_installed() -> None:
    ensure_browser()


async def open_browser(base_url: str) -> AsyncIterator[Browser]:
    """A fresh Chromium for one test, closed after it."""
    with tempfile.TemporaryDirectory(prefix="guestkey-chromium-") as profile:
        driver = await asyncio.to_thread(start_chromium, Path(profile))
        try:
            yield Browser(driver, base_url)
        finally:
            await asyncio.to_thread(driver.quit)
