"""The console over plain HTTP: operators, sign-in, sessions, CSRF, actions and their audit."""

from __future__ import annotations

import asyncio
import html
import re
import subprocess
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import select, update

from app.console.models import AuditEntry, OperatorSession
from app.console.service import (
    LOGIN_FAILURES_PER_ADDRESS,
    LOGIN_FAILURES_PER_EMAIL,
    create_operator,
)
from app.db import utcnow
from app.errors import Conflict, NotFound
from app.reservations.models import Reservation
from app.runtime import Runtime
from tests.conftest import API_KEYS, WEBHOOK_SECRET, job_counts, settle
from tests.console.conftest import csrf_token, make_operator, signed_in_http
from tests.e2e.processes import GUESTKEY, _clean_env
from tests.factories import fake_control, fake_state, put_reservation


async def audit_rows(runtime: Runtime) -> list[tuple[str, str, dict[str, Any]]]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.outcome, AuditEntry.detail).order_by(AuditEntry.id)
        )
        return [(action, outcome, detail) for action, outcome, detail in rows]


async def stay_id(runtime: Runtime, key: str) -> str:
    async with runtime.sessionmaker() as session:
        return str(
            await session.scalar(select(Reservation.id).where(Reservation.reservation_key == key))
        )


async def try_sign_in(
    base_url: str, email: str, password: str, *, forwarded_for: str | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as http:
        form = await http.get("/console/login")
        return await http.post(
            "/console/login",
            data={"email": email, "password": password, "csrf_token": csrf_token(form.text)},
        )


def guestkey(runtime: Runtime, *args: str) -> subprocess.CompletedProcess[str]:
    env = _clean_env() | {
        "DATABASE_URL": runtime.database_url,
        "GUESTKEY_API_KEYS": ",".join(f"{client}:{key}" for client, key in API_KEYS.items()),
        "SEAM_API_KEY": "seam_test_key",
        "SEAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GUESTKEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "GUESTKEY_LOG_FORMAT": "console",
    }
    return subprocess.run(
        [GUESTKEY, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.mark.timeout(300)  # four runs of the command, each importing guestkey afresh
async def test_operators_are_created_listed_and_disabled_from_the_command_line(
    app: FastAPI,
) -> None:
    runtime: Runtime = app.state.runtime
    created = await asyncio.to_thread(guestkey, runtime, "operators", "create", "Ops@Example.com")
    assert created.returncode == 0, created.stderr
    password = created.stdout.strip().splitlines()[-1]
    assert "sees every client" in created.stdout
    scoped = await asyncio.to_thread(
        guestkey, runtime, "operators", "create", "desk@example.com", "--client", "beta"
    )
    assert scoped.returncode == 0, scoped.stderr
    async with runtime.sessionmaker() as session:
        with pytest.raises(NotFound, match="no client named 'nobody'"):
            await create_operator(session, email="x@example.com", client_name="nobody")
        with pytest.raises(Conflict, match="already exists"):
            await create_operator(session, email="OPS@example.com ", client_name=None)

    # The printed password signs in; only its argon2 hash is stored.
    signed_in = await signed_in_http(app.state.url, "ops@example.com", password)
    async with runtime.engine.connect() as connection:
        stored = (await connection.exec_driver_sql("SELECT password_hash FROM operator")).all()
    assert all(row[0].startswith("$argon2id$") and password not in row[0] for row in stored)
    # It is a one-time password: nothing but choosing one's own until that is done.
    first = await signed_in.get("/console")
    assert (first.status_code, first.headers["location"]) == (303, "/console/password")
    form = await signed_in.get("/console/password")
    token = csrf_token(form.text)
    choice = {"csrf_token": token, "current_password": password}
    short = await signed_in.post(
        "/console/password", data=choice | {"new_password": "short", "repeat_password": "short"}
    )
    assert short.status_code == 422 and "at least 12 characters" in short.text
    own = "a password of my own"
    chosen = await signed_in.post(
        "/console/password", data=choice | {"new_password": own, "repeat_password": own}
    )
    assert chosen.status_code == 303
    assert (await signed_in.get("/console")).status_code == 200
    assert (await try_sign_in(app.state.url, "ops@example.com", password)).status_code == 401

    listed = await asyncio.to_thread(guestkey, runtime, "operators", "list")
    assert re.search(r"desk@example.com\tbeta\tactive", listed.stdout)
    assert re.search(r"ops@example.com\tall clients\tactive", listed.stdout)

    disabled = await asyncio.to_thread(guestkey, runtime, "operators", "disable", "ops@example.com")
    assert disabled.returncode == 0, disabled.stderr
    # Disabling ends the open session at once, and the password no longer signs in.
    assert (await signed_in.get("/console")).status_code == 303
    await signed_in.aclose()
    assert (await try_sign_in(app.state.url, "ops@example.com", own)).status_code == 401
    listed = await asyncio.to_thread(guestkey, runtime, "operators", "list")
    assert re.search(r"ops@example.com\tall clients\tdisabled", listed.stdout)


async def test_the_session_cookie_is_httponly_strict_and_secure_over_https(app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    password = await make_operator(runtime, "ops@example.com")
    response = await try_sign_in(app.state.url, "ops@example.com", password)
    cookie = response.headers["set-cookie"].lower()
    assert "guestkey_console=" in cookie and "httponly" in cookie
    assert "samesite=strict" in cookie and "secure" not in cookie
    assert "path=/console" in cookie

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="https://guestkey.test"
    ) as https:
        form = await https.get("/console/login")
        response = await https.post(
            "/console/login",
            data={"email": "ops@example.com", "password": password},
        )
        assert response.status_code == 403  # the sign-in form's own CSRF token is missing
        response = await https.post(
            "/console/login",
            data={
                "email": "ops@example.com",
                "password": password,
                "csrf_token": csrf_token(form.text),
            },
        )
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


async def test_failed_sign_ins_are_limited_per_email_and_per_client_address(
    app: FastAPI,
) -> None:
    runtime: Runtime = app.state.runtime
    password = await make_operator(runtime, "ops@example.com")
    await make_operator(runtime, "other@example.com")
    for _ in range(LOGIN_FAILURES_PER_EMAIL):
        refused = await try_sign_in(app.state.url, "ops@example.com", "wrong password")
        assert refused.status_code == 401
        assert "wrong email or password" in refused.text
    limited = await try_sign_in(app.state.url, "ops@example.com", password)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert "guestkey_console=" not in limited.headers.get("set-cookie", "")

    # Guessing across many emails from one address is limited too.
    for number in range(LOGIN_FAILURES_PER_ADDRESS - LOGIN_FAILURES_PER_EMAIL):
        await try_sign_in(app.state.url, f"guess{number}@example.com", "nope")
    other_password = await make_operator(runtime, "third@example.com")
    assert (
        await try_sign_in(app.state.url, "third@example.com", other_password)
    ).status_code == 429


async def test_sessions_end_when_idle_at_their_lifetime_and_at_sign_out(app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    password = await make_operator(runtime, "ops@example.com")

    async def session_after(**changes: Any) -> int:
        http = await signed_in_http(app.state.url, "ops@example.com", password)
        if changes:
            async with runtime.engine.begin() as connection:
                await connection.execute(update(OperatorSession).values(**changes))
        status = (await http.get("/console")).status_code
        await http.aclose()
        async with runtime.engine.begin() as connection:
            await connection.execute(OperatorSession.__table__.delete())
        return status

    assert await session_after() == 200
    assert await session_after(last_seen_at=utcnow() - timedelta(minutes=31)) == 303
    assert await session_after(expires_at=utcnow() - timedelta(seconds=1)) == 303

    http = await signed_in_http(app.state.url, "ops@example.com", password)
    page = await http.get("/console")
    cookie = http.cookies["guestkey_console"]
    fragment = await http.get("/console/today/parts", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and 'id="stuck"' in fragment.text
    refused = await http.post("/console/logout", data={})
    assert refused.status_code == 403  # sign-out is a form like any other
    signed_out = await http.post("/console/logout", data={"csrf_token": csrf_token(page.text)})
    assert signed_out.status_code == 303
    await http.aclose()
    async with httpx.AsyncClient(
        base_url=app.state.url, cookies={"guestkey_console": cookie}
    ) as replay:
        assert (await replay.get("/console")).status_code == 303
        fragment = await replay.get("/console/today/parts", headers={"HX-Request": "true"})
        assert fragment.status_code == 401
        assert fragment.headers["hx-redirect"] == "/console/login"
    assert [row[0] for row in await audit_rows(runtime)].count("sign_out") == 1


async def test_revealing_a_code_asks_for_the_password_again_and_is_audited(
    app: FastAPI, client: httpx.AsyncClient, fake_seam: Any
) -> None:
    runtime: Runtime = app.state.runtime
    await put_reservation(client, "bk-1")
    await settle(runtime)
    method = (await client.get("/v1/reservations/bk-1")).json()["access_methods"][0]
    password = await make_operator(runtime, "ops@example.com")
    http = await signed_in_http(app.state.url, "ops@example.com", password)
    reservation_id = await stay_id(runtime, "bk-1")

    page = await http.get(f"/console/reservations/{reservation_id}")
    assert page.status_code == 200 and method["code"] not in page.text
    reveal_url = f"/console/reservations/{reservation_id}/reveal/{method['access_method_id']}"
    form = await http.get(reveal_url)
    token = csrf_token(form.text)
    wrong = await http.post(reveal_url, data={"csrf_token": token, "password": "not it"})
    assert wrong.status_code == 403 and method["code"] not in wrong.text
    shown = await http.post(reveal_url, data={"csrf_token": token, "password": password})
    assert shown.status_code == 200
    assert re.search(rf'id="code">{method["code"]}<', shown.text)
    assert shown.headers["cache-control"] == "no-store"
    await http.aclose()
    reveals = [row for row in await audit_rows(runtime) if row[0] == "reveal_code"]
    assert [outcome for _, outcome, _ in reveals] == ["refused", "done"]
    assert reveals[1][2] == {"access_method_id": method["access_method_id"]}


async def test_actions_go_through_the_apis_rules_and_are_audited_done_or_refused(
    app: FastAPI, client: httpx.AsyncClient, fake_seam: Any
) -> None:
    runtime: Runtime = app.state.runtime
    async with fake_control(fake_seam) as control:
        await control.post("/_fake/auto_issue", json={"enabled": False})
    await put_reservation(client, "bk-1")
    await settle(runtime)
    password = await make_operator(runtime, "ops@example.com")
    http = await signed_in_http(app.state.url, "ops@example.com", password)
    reservation_id = await stay_id(runtime, "bk-1")
    token = csrf_token((await http.get(f"/console/reservations/{reservation_id}/resend")).text)

    async def act(action: str) -> str:
        done = await http.post(
            f"/console/reservations/{reservation_id}/{action}", data={"csrf_token": token}
        )
        assert done.status_code == 303
        page = await http.get(done.headers["location"])
        match = re.search(r'id="notice">([^<]*)<', page.text)
        assert match, page.text
        return html.unescape(match.group(1))

    # No code yet: the API's resend answers 409, so the console's is refused, with its reason.
    assert "resend: refused — reservation 'bk-1' has no issued code" in await act("resend")
    assert "resync: done" in await act("resync")
    assert (await job_counts(runtime)).get("todo", 0) >= 1
    await settle(runtime)
    assert "cancel: done" in await act("cancel")
    await settle(runtime)
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "cancelled"
    assert (await fake_state(fake_seam))["access_grants"] == []
    await http.aclose()
    actions = [(action, outcome) for action, outcome, _ in await audit_rows(runtime)]
    assert actions == [
        ("sign_in", "done"),
        ("resend", "refused"),
        ("resync", "done"),
        ("cancel", "done"),
    ]


async def test_unknown_or_malformed_console_addresses_are_404_pages(app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    password = await make_operator(runtime, "ops@example.com")
    http = await signed_in_http(app.state.url, "ops@example.com", password)
    for path in (
        "/console/reservations/not-a-uuid",
        "/console/reservations/00000000-0000-0000-0000-000000000000",
        "/console/reservations/00000000-0000-0000-0000-000000000000/explode",
    ):
        response = await http.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
    await http.aclose()


def test_the_console_adds_no_middleware_and_its_routes_come_after_the_apis() -> None:
    """Webhook intake and the API pay nothing for the console: no middleware of its own, and
    their routes are matched before any of its."""
    from app.main import create_app
    from tests.conftest import make_settings

    application = create_app(make_settings(), run_worker=False)
    middleware = [entry.cls.__name__ for entry in application.user_middleware]  # type: ignore[attr-defined]
    assert middleware == ["RequestContextMiddleware", "BodyLimitMiddleware"]
    paths = [_first_path(route) for route in application.router.routes]
    first_console = min(i for i, path in enumerate(paths) if path.startswith("/console"))
    assert paths.index("/webhooks/seam") < first_console
    assert max(i for i, path in enumerate(paths) if path.startswith("/v1/")) < first_console


def _first_path(route: Any) -> str:
    """A route's path, or an included router's first (FastAPI keeps them as one entry)."""
    router = getattr(route, "original_router", None)
    if router is not None:
        return str(router.routes[0].path) if router.routes else ""
    return str(getattr(route, "path", ""))


async def test_a_fresh_code_from_the_console_reaches_the_guest_once_and_supersedes_the_old(
    app: FastAPI, client: httpx.AsyncClient, fake_seam: Any, mailbox: Any
) -> None:
    runtime: Runtime = app.state.runtime
    await put_reservation(client, "bk-1")
    await settle(runtime)
    before = (await client.get("/v1/reservations/bk-1")).json()
    assert before["status"] == "delivered"
    password = await make_operator(runtime, "ops@example.com")
    http = await signed_in_http(app.state.url, "ops@example.com", password)
    reservation_id = await stay_id(runtime, "bk-1")
    page = await http.get(f"/console/reservations/{reservation_id}/fresh_code")
    assert page.status_code == 200
    done = await http.post(
        f"/console/reservations/{reservation_id}/fresh_code",
        data={"csrf_token": csrf_token(page.text)},
    )
    assert done.status_code == 303
    await settle(runtime)
    await http.aclose()

    after = (await client.get("/v1/reservations/bk-1")).json()
    states = {m["access_method_id"]: m["state"] for m in after["access_methods"]}
    assert states[before["access_methods"][0]["access_method_id"]] == "superseded"
    assert list(states.values()).count("current") == 1
    assert len(mailbox.to("ada@example.com")) == 2
    assert ("fresh_code", "done") in [(a, o) for a, o, _ in await audit_rows(runtime)]
