"""The console in a real browser: what an operator sees and does, end to end."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.console.models import AuditEntry
from app.reservations.models import Reservation
from app.runtime import Runtime
from tests.browser import Browser
from tests.conftest import API_KEYS, Mailbox, settle
from tests.console.conftest import make_operator
from tests.factories import BACK_DOOR, fail_next, fake_control, put_reservation, stay


async def sign_in(
    browser: Browser,
    email: str,
    password: str,
    *,
    new_password: str | None = None,
    shot: str | None = None,
) -> None:
    """Sign in; with `new_password`, replace the one-time password at the first sign-in."""
    await browser.open("/console")
    assert (await browser.path()).startswith("/console/login")
    await browser.fill("input[name=email]", email)
    await browser.fill("input[name=password]", password)
    if shot:
        await browser.screenshot(shot)
    await browser.click("#login button[type=submit]")
    await browser.wait_for_text("#operator", email)
    if new_password is not None:
        assert await browser.path() == "/console/password"
        assert "Choose your password" in await browser.text("h1")
        await browser.fill("input[name=current_password]", password)
        await browser.fill("input[name=new_password]", new_password)
        await browser.fill("input[name=repeat_password]", new_password)
        await browser.click("#password button[type=submit]")
        await browser.wait_for_text("h1", "Today")


async def reservation_id(runtime: Runtime, key: str) -> uuid.UUID:
    async with runtime.sessionmaker() as session:
        found = await session.scalar(
            select(Reservation.id).where(Reservation.reservation_key == key)
        )
        assert found is not None
        return found


async def audit_entries(runtime: Runtime) -> list[tuple[str, str]]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.outcome).order_by(AuditEntry.id)
        )
        return [(action, outcome) for action, outcome in rows]


async def lose_door(fake: Any, access_grant_id: str, device_id: str) -> None:
    """Seam reports that a lock dropped the stay's code (`access_grant.access_to_door_lost`)."""
    async with fake_control(fake) as control:
        response = await control.post(
            "/_fake/emit",
            json={
                "event_type": "access_grant.access_to_door_lost",
                "access_grant_id": access_grant_id,
                "device_id": device_id,
            },
        )
        assert response.status_code == 200, response.text


async def test_operator_finds_a_stuck_stay_reads_why_resends_and_the_audit_log_shows_it(
    app: FastAPI, client: httpx.AsyncClient, fake_seam: Any, browser: Browser, mailbox: Mailbox
) -> None:
    runtime: Runtime = app.state.runtime
    password = await make_operator(runtime, "ops@example.com", one_time=True)
    starts_at, ends_at = stay(days_from_now=1)
    # One stay Seam refuses outright, one whose lock Seam says lost the code.
    await fail_next(
        fake_seam,
        count=1,
        status=400,
        error_type="device_not_found",
        message="Device is not in this workspace",
        endpoint="/access_grants/create",
    )
    await put_reservation(client, "bk-refused", starts_at=starts_at, ends_at=ends_at)
    await settle(runtime)
    await put_reservation(
        client,
        "bk-lost",
        starts_at=starts_at,
        ends_at=ends_at,
        guest={"name": "Grace Hopper", "email": "grace@example.com", "locale": "en"},
    )
    await settle(runtime)
    lost = (await client.get("/v1/reservations/bk-lost")).json()
    assert lost["status"] == "delivered", lost
    await lose_door(fake_seam, lost["access_grant_id"], BACK_DOOR.id)
    await settle(runtime)
    messages_before = len(mailbox.to("grace@example.com"))

    await sign_in(
        browser, "ops@example.com", password, new_password="correct horse battery", shot="login"
    )
    stuck = await browser.wait_for_text("#stuck", "bk-lost")
    assert "bk-refused" in stuck and "Device is not in this workspace" in stuck
    assert "door Back Door: lost" in stuck
    await browser.screenshot("today")

    await browser.click("#stuck tr[data-key=bk-lost] a")
    await browser.wait_for_text("h1", "bk-lost")
    doors = await browser.text("#doors")
    assert "Back Door device" in doors and "lost" in doors
    assert "door_lost" in await browser.text("#timeline")
    assert "access_grant.access_to_door_lost" in await browser.text("#webhooks")
    assert "••••••" in await browser.text("#codes")  # the code itself is not on the page
    await browser.screenshot("reservation")

    await browser.click("#action-resend")
    await browser.wait_for_text("h1", "Resend bk-lost")
    await browser.screenshot("confirm")
    await browser.click("#confirm button[type=submit]")
    assert "resend: done" in await browser.wait_for_text("#notice", "resend")
    assert "ops@example.com resend done" in await browser.text("#audit")

    await settle(runtime)
    assert len(mailbox.to("grace@example.com")) == messages_before + 1
    assert ("resend", "done") in await audit_entries(runtime)
    await browser.click_link("Audit log")
    log = await browser.wait_for_text("table.audit", "resend")
    assert "ops@example.com" in log and "bk-lost" in log
    assert "choose_password" in log and "sign_in" in log
    await browser.screenshot("audit")

    await browser.open("/console/reservations?q=grace")
    assert "bk-lost" in await browser.text("#results")
    assert "bk-refused" not in await browser.text("#results")
    await browser.screenshot("reservations")
    await browser.click_link("Health")
    intake = await browser.wait_for_text("#webhook-intake", "Last event received")
    assert "processed" in intake  # the door-lost event, among others
    assert "door_lost: 1" in await browser.text("#seam-errors")
    assert "Device is not in this workspace" in await browser.text("#seam-errors")
    await browser.screenshot("health")


async def test_a_client_operator_sees_only_that_clients_stays_even_by_url(
    app: FastAPI, client: httpx.AsyncClient, browser: Browser
) -> None:
    runtime: Runtime = app.state.runtime
    starts_at, ends_at = stay(days_from_now=1)
    await put_reservation(client, "alpha-stay", starts_at=starts_at, ends_at=ends_at)
    async with httpx.AsyncClient(
        base_url=app.state.url, headers={"Authorization": f"Bearer {API_KEYS['beta']}"}
    ) as beta:
        await put_reservation(beta, "beta-stay", starts_at=starts_at, ends_at=ends_at)
    await settle(runtime)
    password = await make_operator(runtime, "alpha-desk@example.com", client="alpha")

    await sign_in(browser, "alpha-desk@example.com", password)
    arrivals = await browser.wait_for_text("#arrivals", "alpha-stay")
    assert "beta-stay" not in arrivals
    await browser.open("/console/reservations")
    assert "beta-stay" not in await browser.text("#results")
    await browser.open("/console/reservations?q=beta")
    assert "No reservation matches" in await browser.text("main")

    beta_id = await reservation_id(runtime, "beta-stay")
    await browser.open(f"/console/reservations/{beta_id}")
    assert "no such reservation" in await browser.text("#error")
    assert "beta-stay" not in await browser.text("body")
    await browser.open(f"/console/reservations/{beta_id}/resend")
    assert "no such reservation" in await browser.text("#error")
    status = await browser.run_script(
        "const r = await fetch(arguments[0]); return r.status;",
        f"/console/reservations/{beta_id}",
    )
    assert status == 404


async def test_a_form_posted_without_its_csrf_token_is_refused(
    app: FastAPI, client: httpx.AsyncClient, browser: Browser
) -> None:
    runtime: Runtime = app.state.runtime
    await put_reservation(client, "bk-1")
    await settle(runtime)
    password = await make_operator(runtime, "ops@example.com")
    await sign_in(browser, "ops@example.com", password)
    key_id = await reservation_id(runtime, "bk-1")

    await browser.open(f"/console/reservations/{key_id}/cancel")
    await browser.run_script("document.querySelector('#confirm input[name=csrf_token]').remove()")
    await browser.click("#confirm button[type=submit]")
    assert "out of date" in await browser.wait_for_text("#error", "form")
    status = await browser.run_script(
        "const r = await fetch(arguments[0], {method: 'POST', body: new URLSearchParams("
        "{csrf_token: 'forged'})}); return r.status;",
        f"/console/reservations/{key_id}/cancel",
    )
    assert status == 403
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "delivered"
    assert ("cancel", "done") not in await audit_entries(runtime)


async def test_today_updates_itself_when_a_code_is_delivered_while_it_is_open(
    app: FastAPI, client: httpx.AsyncClient, fake_seam: Any, browser: Browser
) -> None:
    runtime: Runtime = app.state.runtime
    async with fake_control(fake_seam) as control:
        await control.post("/_fake/auto_issue", json={"enabled": False})
    starts_at, ends_at = stay(days_from_now=1)
    await put_reservation(client, "bk-tonight", starts_at=starts_at, ends_at=ends_at)
    await settle(runtime)
    reservation = (await client.get("/v1/reservations/bk-tonight")).json()
    assert reservation["status"] == "granted"
    password = await make_operator(runtime, "ops@example.com")
    await sign_in(browser, "ops@example.com", password)
    row = "#arrivals tr[data-key=bk-tonight]"
    assert "not yet" in await browser.wait_for_text(row, "granted")
    await browser.run_script("window.openedOnce = true")

    async with fake_control(fake_seam) as control:
        issued = await control.post(
            "/_fake/issue", json={"access_grant_id": reservation["access_grant_id"]}
        )
        assert issued.status_code == 200
    await settle(runtime)

    assert "yes" in await browser.wait_for_text(f"{row} td.delivered", "yes")
    assert "delivered" in await browser.text(row)
    # The same page, refreshed in place: a reload would have dropped the marker.
    assert await browser.run_script("return window.openedOnce === true") is True
