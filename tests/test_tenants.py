"""Clients kept apart: their own callbacks, revocation that holds, limits (DESIGN.md §9.7)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from svix.webhooks import Webhook, WebhookVerificationError

from app.clients import service as clients
from app.config import ConfigurationError, Rate
from app.errors import Conflict, InvalidInput
from app.runtime import Runtime, open_runtime
from tests.conftest import make_settings, settle
from tests.factories import put_reservation, stay

GUESTKEY = str(Path(sys.executable).parent / "guestkey")


class Sink:
    """A booking system's callback endpoint: a real HTTP server that keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                sink.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every event, verified with `secret` (a wrong secret fails the test)."""
        return [Webhook(secret).verify(body, headers) for headers, body in self.received]


@pytest.fixture
def sinks() -> Iterator[tuple[Sink, Sink]]:
    pair = (Sink(), Sink())
    yield pair
    for sink in pair:
        sink.server.shutdown()


async def make_client(
    runtime: Runtime, name: str, callback_url: str | None = None
) -> tuple[str, str | None]:
    async with runtime.sessionmaker() as session:
        _, key, secret = await clients.create_client(
            session, name=name, callback_url=callback_url, cipher=runtime.cipher
        )
        await session.commit()
    return key, secret


def as_client(app: FastAPI, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://guestkey.test",
        headers={"Authorization": f"Bearer {key}"},
    )


# --- per-client callbacks ------------------------------------------------------------------


async def test_each_client_gets_only_its_own_events_at_its_own_url(
    app: FastAPI, runtime: Runtime, sinks: tuple[Sink, Sink]
) -> None:
    acme_sink, zenith_sink = sinks
    acme_key, acme_secret = await make_client(runtime, "acme", acme_sink.url)
    zenith_key, zenith_secret = await make_client(runtime, "zenith", zenith_sink.url)
    assert acme_secret and zenith_secret and acme_secret != zenith_secret
    async with as_client(app, acme_key) as acme, as_client(app, zenith_key) as zenith:
        # The same reservation key at both booking systems.
        assert (await put_reservation(acme, "bk-1")).status_code == 201
        assert (await put_reservation(zenith, "bk-1")).status_code == 201
        await settle(runtime)
        assert (await acme.delete("/v1/reservations/bk-1")).status_code == 200
        await settle(runtime)

    acme_events = acme_sink.verified(acme_secret)
    zenith_events = zenith_sink.verified(zenith_secret)
    assert [event["type"] for event in acme_events] == [
        "reservation.issued",
        "reservation.delivered",
        "reservation.cancelled",
    ]
    assert "reservation.cancelled" not in [event["type"] for event in zenith_events]
    assert {event["data"]["client"] for event in acme_events} == {"acme"}
    assert {event["data"]["client"] for event in zenith_events} == {"zenith"}
    # Signed with the client's own secret: the other client's secret does not verify them.
    with pytest.raises(WebhookVerificationError):
        acme_sink.verified(zenith_secret)


async def test_set_callback_moves_a_clients_events_and_keeps_its_secret(
    app: FastAPI, runtime: Runtime, sinks: tuple[Sink, Sink]
) -> None:
    old_sink, new_sink = sinks
    key, secret = await make_client(runtime, "acme", old_sink.url)
    assert secret is not None
    async with runtime.sessionmaker() as session:
        made = await clients.set_callback(
            session, name="acme", callback_url=new_sink.url, cipher=runtime.cipher
        )
        await session.commit()
    assert made is None  # the client keeps the secret the booking system already has
    async with as_client(app, key) as acme:
        await put_reservation(acme, "bk-1")
        await settle(runtime)
    assert old_sink.received == []
    assert [event["data"]["client"] for event in new_sink.verified(secret)] == ["acme", "acme"]


async def test_callback_urls_must_be_https_unless_local(runtime: Runtime) -> None:
    async with runtime.sessionmaker() as session:
        with pytest.raises(InvalidInput, match="https"):
            await clients.create_client(
                session,
                name="acme",
                callback_url="http://pms.example.com/hook",
                cipher=runtime.cipher,
            )


# --- revocation ----------------------------------------------------------------------------


async def test_a_revoked_clients_key_and_name_stay_dead(app: FastAPI, runtime: Runtime) -> None:
    key, _ = await make_client(runtime, "acme")
    async with as_client(app, key) as acme:
        await put_reservation(acme, "bk-1")
    async with runtime.sessionmaker() as session:
        await clients.revoke_client(session, name="acme")
        await session.commit()
    async with as_client(app, key) as acme:
        assert (await acme.get("/v1/reservations/bk-1")).status_code == 401
    async with runtime.sessionmaker() as session:
        with pytest.raises(Conflict, match="revoked"):
            await clients.create_client(session, name="acme")


async def test_an_environment_key_never_opens_a_revoked_clients_reservations(
    runtime: Runtime, clean_database: str, settings_overrides: dict[str, Any]
) -> None:
    await make_client(runtime, "acme")
    async with runtime.sessionmaker() as session:
        await clients.revoke_client(session, name="acme")
        await session.commit()
    settings = make_settings(**settings_overrides, guestkey_api_keys="acme:key-acme-0123456789")
    with pytest.raises(ConfigurationError, match="acme"):
        async with open_runtime(settings, database_url=clean_database):
            pass


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUESTKEY_", "SEAM_"))}
    return subprocess.run(
        [GUESTKEY, *args],
        env={
            **env,
            "DATABASE_URL": database_url,
            "GUESTKEY_API_KEYS": "alpha:key-alpha-0123456789",
            "GUESTKEY_ENCRYPTION_KEY": "ZOoKJYswXKzZvtrOop_vywXcUFmMpkGlOrCQe4Xggx0=",
            "GUESTKEY_LOG_LEVEL": "warning",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_callbacks_and_revocations(runtime: Runtime, clean_database: str) -> None:
    created = cli(
        clean_database, "clients", "create", "acme", "--callback-url", "https://pms.example/h"
    )
    assert created.returncode == 0, created.stderr
    lines = created.stdout.strip().splitlines()
    assert lines[1].startswith("gk_live_") and lines[3].startswith("whsec_")

    moved = cli(clean_database, "clients", "set-callback", "acme", "https://pms.example/new")
    assert moved.returncode == 0, moved.stderr
    assert "whsec_" not in moved.stdout  # acme keeps the secret it was given

    in_the_environment = cli(clean_database, "clients", "revoke", "alpha")
    assert in_the_environment.returncode == 2
    assert "GUESTKEY_API_KEYS" in in_the_environment.stderr

    assert cli(clean_database, "clients", "revoke", "acme").returncode == 0
    again = cli(clean_database, "clients", "create", "acme")
    assert again.returncode == 2 and "revoked" in again.stderr
    assert "gk_live_" not in again.stdout


# --- limits --------------------------------------------------------------------------------


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "guestkey_seam_change_limit": "3/1h"}


async def test_resend_beyond_the_limit_is_429_with_retry_after(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)
    await put_reservation(client, "bk-2")  # not counted: creations do not spend the budget
    await settle(runtime)
    for _ in range(3):  # GUESTKEY_RESEND_LIMIT: 3/1h, the default
        assert (await client.post("/v1/reservations/bk-1/resend")).status_code == 202
    refused = await client.post("/v1/reservations/bk-1/resend")
    assert refused.status_code == 429
    assert refused.json()["code"] in ("resend_limit_reached", "seam_change_limit_reached")
    assert 0 < int(refused.headers["Retry-After"]) <= 3600


async def test_the_resend_limit_counts_per_reservation(
    client: httpx.AsyncClient, runtime: Runtime, settings_overrides: dict[str, Any]
) -> None:
    runtime.settings.guestkey_seam_change_limit = Rate.parse("100/1h")
    for key in ("bk-1", "bk-2"):
        await put_reservation(client, key)
    await settle(runtime)
    for _ in range(3):
        assert (await client.post("/v1/reservations/bk-1/resend")).status_code == 202
    refused = await client.post("/v1/reservations/bk-1/resend")
    assert refused.status_code == 429 and refused.json()["code"] == "resend_limit_reached"
    assert (await client.post("/v1/reservations/bk-2/resend")).status_code == 202
    await settle(runtime)
    metrics = (await client.get("/metrics")).text
    assert 'guestkey_rate_limited_total{limit="resend"}' in metrics


async def test_a_clients_seam_changes_beyond_its_budget_are_429(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient, runtime: Runtime
) -> None:
    for key in ("bk-1", "bk-2", "bk-3"):
        await put_reservation(client, key)
    later_start, later_end = stay(days_from_now=20)
    moved = await put_reservation(client, "bk-1", starts_at=later_start, ends_at=later_end)
    assert moved.status_code == 200  # 1
    same = await put_reservation(client, "bk-1", starts_at=later_start, ends_at=later_end)
    assert same.status_code == 200  # unchanged: free
    assert (await client.delete("/v1/reservations/bk-2")).status_code == 200  # 2
    assert (await client.delete("/v1/reservations/bk-3")).status_code == 200  # 3
    refused = await client.delete("/v1/reservations/bk-1")
    assert refused.status_code == 429
    assert refused.json()["code"] == "seam_change_limit_reached"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] != "cancelled"
    # Another client's budget is its own.
    await put_reservation(other_client, "bk-9")
    assert (await other_client.delete("/v1/reservations/bk-9")).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'guestkey_rate_limited_total{limit="seam_changes"}' in metrics
