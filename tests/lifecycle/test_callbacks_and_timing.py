"""Signed callbacks to the booking system, and the delivery lead time."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from svix.webhooks import Webhook, WebhookVerificationError

from app.main import create_app
from app.runtime import Runtime
from tests.conftest import API_KEYS, Mailbox, make_retries_due, make_settings, settle
from tests.factories import doors_not_checkable, put_reservation
from tests.webhooks.signing import OTHER_SECRET

CALLBACK_SECRET = OTHER_SECRET


class Receiver:
    """A booking system's endpoint: a real HTTP server that verifies with svix."""

    def __init__(self) -> None:
        self.verified: list[dict[str, Any]] = []
        self.rejected = 0
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    event = Webhook(CALLBACK_SECRET).verify(body, dict(self.headers))
                except WebhookVerificationError:
                    receiver.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.verified.append(event)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/guestkey-events"

    def types(self) -> list[str]:
        return [event["type"] for event in self.verified]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()
    thread = threading.Thread(target=box.server.serve_forever, daemon=True)
    thread.start()
    yield box
    box.server.shutdown()


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], receiver: Receiver) -> dict[str, Any]:
    return {
        **settings_overrides,
        "guestkey_callback_url": receiver.url,
        "guestkey_callback_secret": CALLBACK_SECRET,
        "guestkey_delivery_lead": "48h",
    }


async def test_callbacks_are_signed_and_verify_with_svix(
    client: httpx.AsyncClient, runtime: Runtime, receiver: Receiver
) -> None:
    # A stay that starts within the lead time: the code goes out at once.
    now = datetime.now().astimezone()
    await put_reservation(
        client,
        "bk-1",
        starts_at=(now + timedelta(hours=2)).isoformat(),
        ends_at=(now + timedelta(days=2)).isoformat(),
    )
    await settle(runtime)
    await client.delete("/v1/reservations/bk-1")
    await settle(runtime)
    assert receiver.types() == [
        "reservation.issued",
        "reservation.delivered",
        "reservation.cancelled",
    ]
    assert receiver.rejected == 0
    delivered = receiver.verified[1]["data"]
    assert delivered["reservation_key"] == "bk-1" and delivered["status"] == "delivered"
    assert "code" not in json.dumps(receiver.verified)


async def test_a_failing_booking_system_gets_the_callback_on_retry(
    client: httpx.AsyncClient, runtime: Runtime, receiver: Receiver
) -> None:
    receiver.fail_next = 1
    await doors_not_checkable(runtime.fake_seam)
    await put_reservation(client, "bk-1", device_ids=["00000000-0000-4000-8000-000000000000"])
    await settle(runtime)
    assert receiver.types() == []
    await make_retries_due(runtime)
    await settle(runtime)
    assert receiver.types() == ["reservation.failed"]


async def test_the_code_waits_for_the_lead_time_and_survives_a_restart(
    clean_database: str,
    settings_overrides: dict[str, Any],
    mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    settings = make_settings(**settings_overrides)

    async def started() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        app = create_app(settings, database_url=clean_database, run_worker=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app),
                base_url="http://guestkey.test",
                headers={"Authorization": f"Bearer {API_KEYS['alpha']}"},
            ) as client,
        ):
            yield app, client

    # The stay starts in 7 days; with a 48 h lead the message is due in 5.
    async for app, client in started():
        await put_reservation(client, "bk-1")
        await settle(app.state.runtime)
        reservation = (await client.get("/v1/reservations/bk-1")).json()
        assert reservation["status"] == "issued"
        (delivery,) = reservation["deliveries"]
        assert delivery["status"] == "scheduled"
        due = datetime.fromisoformat(delivery["send_after"])
        assert due == datetime.fromisoformat(reservation["starts_at"]) - timedelta(hours=48)
        assert mailbox.messages == []

    # guestkey restarts; five days pass.
    later = due + timedelta(seconds=5)
    import app.delivery.flows as delivery_flows
    import app.delivery.service as delivery_service

    monkeypatch.setattr(delivery_flows, "utcnow", lambda: later)
    monkeypatch.setattr(delivery_service, "utcnow", lambda: later)
    async for app, client in started():
        await make_retries_due(app.state.runtime)
        await settle(app.state.runtime)
        reservation = (await client.get("/v1/reservations/bk-1")).json()
        assert reservation["status"] == "delivered"
        assert len(mailbox.to("ada@example.com")) == 1


async def test_a_code_issued_after_the_send_time_goes_out_at_once(
    client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    now = datetime.now().astimezone()
    await put_reservation(
        client,
        "bk-1",
        starts_at=(now + timedelta(hours=20)).isoformat(),
        ends_at=(now + timedelta(days=3)).isoformat(),
    )
    await settle(runtime)
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "delivered"
    assert len(mailbox.messages) == 1
