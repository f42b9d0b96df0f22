"""What a guest sees and does on their page, in Chromium, at phone and laptop sizes; every
state is checked with axe-core and saved as a screenshot (test-output/screenshots/)."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from app.runtime import Runtime
from tests.browser import SCREENSHOTS_DIR, Browser
from tests.conftest import Mailbox, settle
from tests.factories import BACK_DOOR, FRONT_DOOR, fake_control, put_reservation
from tests.guests.support import SUPPORT_CONTACT, code_in, codes_of, link_in
from tests.lifecycle.test_callbacks_and_timing import Receiver

AXE = Path(__file__).resolve().parents[2] / "vendor" / "axe.min.js"
AXE_RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


async def accessibility_violations(browser: Browser) -> list[str]:
    """axe-core's WCAG 2.1 AA and best-practice findings on the page as it is now."""
    await browser.run_script(AXE.read_text())
    violations: list[str] = await browser._call(
        browser.driver.execute_async_script,
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}})
           .then(result => done(result.violations.map(
               v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
           .catch(error => done(['axe failed: ' + error]));
        """,
        AXE_RULES,
    )
    return violations


async def shoot(browser: Browser, state: str, viewport: tuple[int, int]) -> Path:
    """The whole page (not only what fits the screen), as a person would scroll through it."""
    width, height = viewport
    full_height = await browser.run_script("return document.documentElement.scrollHeight")
    driver = browser.driver
    metrics = {"width": width, "height": max(height, int(full_height)), "deviceScaleFactor": 1}
    await browser._call(
        driver.execute_cdp_cmd,
        "Emulation.setDeviceMetricsOverride",
        {**metrics, "mobile": width < 600},
    )
    shot = await browser._call(driver.execute_cdp_cmd, "Page.captureScreenshot", {"format": "png"})
    await browser._call(
        driver.execute_cdp_cmd,
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS_DIR / f"guest-{state}-{width}x{height}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


async def check(browser: Browser, state: str, viewport: tuple[int, int]) -> None:
    assert await accessibility_violations(browser) == []
    await shoot(browser, state, viewport)


async def delivered_stay(
    client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox, **overrides: Any
) -> tuple[str, str]:
    await put_reservation(client, "bk-1", **overrides)
    await settle(runtime)
    (message,) = mailbox.messages
    return link_in(message), code_in(message)


async def test_a_delivered_stay_shows_its_doors_and_reveals_the_code_on_tap(
    browser: Browser,
    client: httpx.AsyncClient,
    runtime: Runtime,
    mailbox: Mailbox,
    viewport: tuple[int, int],
) -> None:
    path, code = await delivered_stay(client, runtime, mailbox)
    await browser.open(path)
    assert await browser.run_script("return document.documentElement.lang") == "en"
    doors = await browser.text("#doors")
    assert "Front Door" in doors and "Back Door" in doors and "Ready" in doors
    assert code not in await browser.text()
    assert SUPPORT_CONTACT in await browser.text("#support")
    await check(browser, "delivered", viewport)

    await browser.click("#show-code")
    await browser.wait_for_text("#code", code)
    await check(browser, "code-shown", viewport)


async def test_keyboard_focus_runs_through_the_page_in_reading_order(
    browser: Browser, client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    path, _ = await delivered_stay(client, runtime, mailbox)
    await browser.open(path)
    body = await browser.find("body")
    order: list[str] = []
    for _ in range(10):
        await browser._call(body.send_keys, Keys.TAB)
        focused = await browser._call(browser.driver.switch_to.active_element.get_attribute, "id")
        name = await browser.run_script("return document.activeElement.textContent.trim()")
        order.append(focused or name)
    assert order[:7] == [
        "English",
        "Español",
        "Français",
        "Deutsch",
        "Italiano",
        "Português",
        "Nederlands",
    ]
    assert order[7:10] == ["show-code", "door", "report-problem"]


async def test_a_cancelled_stays_link_shows_no_code(
    browser: Browser,
    client: httpx.AsyncClient,
    runtime: Runtime,
    mailbox: Mailbox,
    viewport: tuple[int, int],
) -> None:
    path, code = await delivered_stay(client, runtime, mailbox)
    await client.delete("/v1/reservations/bk-1")
    await settle(runtime)
    await browser.open(path)
    assert "This stay was cancelled" in await browser.text("#cancelled")
    assert await browser.find_all("#show-code") == []
    assert code not in await browser.text()
    await check(browser, "cancelled", viewport)


async def test_expired_and_forged_links_get_a_plain_404_page(
    browser: Browser,
    client: httpx.AsyncClient,
    runtime: Runtime,
    mailbox: Mailbox,
    viewport: tuple[int, int],
) -> None:
    path, code = await delivered_stay(client, runtime, mailbox)
    await browser.open(f"/g/{secrets.token_urlsafe(32)}")
    assert await browser.text("h1") == "Link not found"
    await check(browser, "not-found", viewport)

    async with runtime.engine.begin() as connection:
        from sqlalchemy import text

        await connection.execute(
            text(
                "UPDATE reservation SET starts_at = now() - interval '5 days', "
                "ends_at = now() - interval '2 days'"
            )
        )
    await browser.open(path)
    assert await browser.text("h1") == "Link not found"
    assert code not in await browser.text()


async def test_the_language_switcher_changes_the_page_and_keeps_the_language(
    browser: Browser,
    client: httpx.AsyncClient,
    runtime: Runtime,
    mailbox: Mailbox,
    viewport: tuple[int, int],
) -> None:
    path, code = await delivered_stay(
        client,
        runtime,
        mailbox,
        guest={"name": "Jean", "email": "jean@example.com", "locale": "fr"},
    )
    await browser.open(path)
    assert await browser.run_script("return document.documentElement.lang") == "fr"
    assert "Afficher le code" in await browser.text("#show-code")
    await browser.click_link("Deutsch")
    await browser.wait_for_text("#show-code", "Code anzeigen")
    assert await browser.run_script("return document.documentElement.lang") == "de"
    current = await browser.find("nav a[aria-current=true]")
    assert await browser._call(lambda: current.text) == "Deutsch"
    await check(browser, "language-de", viewport)
    await browser.click("#show-code")  # the form carries the language on
    await browser.wait_for_text("#code", code)
    assert "Behalten Sie diesen Code für sich." in await browser.text()


async def test_a_report_about_an_offline_door_explains_what_happens_next(
    browser: Browser,
    client: httpx.AsyncClient,
    runtime: Runtime,
    mailbox: Mailbox,
    fake_seam: Any,
    viewport: tuple[int, int],
) -> None:
    path, code = await delivered_stay(client, runtime, mailbox)
    async with fake_control(fake_seam) as control:
        response = await control.post(
            "/_fake/device", json={"device_id": BACK_DOOR.id, "online": False}
        )
        assert response.status_code == 200
    await browser.open(path)
    select = await browser.find("#door")
    option = await browser._call(
        select.find_element, By.CSS_SELECTOR, f"option[value='{BACK_DOOR.id}']"
    )
    await browser._call(option.click)
    await browser.click("#report-problem")
    report = await browser.wait_for_text("#report", "The lock is offline")
    assert "Back Door" in report and SUPPORT_CONTACT in report
    await check(browser, "problem-door-offline", viewport)
    await settle(runtime)
    assert await codes_of(runtime) == [("current", code)]  # no fresh code for a lock offline
    assert len(mailbox.messages) == 1


async def test_a_report_seam_sees_no_problem_with_shows_a_fresh_code_sent_once(
    browser: Browser,
    client: httpx.AsyncClient,
    runtime: Runtime,
    mailbox: Mailbox,
    viewport: tuple[int, int],
    receiver: Receiver,
) -> None:
    path, old_code = await delivered_stay(client, runtime, mailbox)
    await browser.open(path)
    select = await browser.find("#door")
    option = await browser._call(
        select.find_element, By.CSS_SELECTOR, f"option[value='{FRONT_DOOR.id}']"
    )
    await browser._call(option.click)
    await browser.click("#report-problem")
    await browser.wait_for_text("#report", "Here is a new code")
    new_code = await browser.text("#code")
    assert new_code.isdigit() and new_code != old_code
    await check(browser, "problem-fresh-code", viewport)

    await settle(runtime)
    assert await codes_of(runtime) == [("superseded", old_code), ("current", new_code)]
    assert [code_in(message) for message in mailbox.messages] == [old_code, new_code]
    reported = [e for e in receiver.verified if e["type"] == "reservation.guest_reported_problem"]
    assert [e["data"]["problem"] for e in reported] == [
        {"door_id": FRONT_DOOR.id, "finding": "fresh_code"}
    ]
    assert "reservation.code_changed" in receiver.types()
