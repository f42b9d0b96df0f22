"""From access_method.issued to the guest's inbox, in-process against the fake Seam."""

from __future__ import annotations

from typing import Any

import httpx

from app.runtime import Runtime
from tests.conftest import Mailbox, make_retries_due, settle
from tests.factories import fake_control, fake_state, put_reservation, reservation_body


async def the_code(fake: Any, access_grant_id: str) -> str:
    methods = [
        m
        for m in (await fake_state(fake))["access_methods"]
        if m["access_grant_id"] == access_grant_id
    ]
    assert len(methods) == 1
    code: str = methods[0]["code"]
    return code


def text_of(message: Any) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_of(message: Any) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


async def test_issued_code_and_doors_reach_the_guest_by_email(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)

    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "delivered", reservation
    code = await the_code(fake_seam, reservation["access_grant_id"])
    assert [m["code"] for m in reservation["access_methods"]] == [code]
    assert {d["name"] for d in reservation["doors"]} == {"Front Door", "Back Door"}
    assert [(d["channel"], d["to"], d["status"]) for d in reservation["deliveries"]] == [
        ("email", "ada@example.com", "sent")
    ]

    messages = mailbox.to("ada@example.com")
    assert len(messages) == 1
    message = messages[0]
    assert "Seaside Loft" in message["Subject"]
    assert message.get_content_type() == "multipart/alternative"
    for part in (text_of(message), html_of(message)):
        assert code in part
        assert "Front Door" in part and "Back Door" in part
    kinds = [e["kind"] for e in (await client.get("/v1/reservations/bk-1/events")).json()["events"]]
    assert kinds == ["requested", "grant_created", "issued", "delivered"]


async def test_five_deliveries_of_the_same_webhook_send_one_email(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)
    async with fake_control(fake_seam) as control:
        log = (await control.get("/_fake/webhooks")).json()
        issued = [m for m in log["messages"] if m["event"]["event_type"] == "access_method.issued"]
        assert len(issued) == 1
        for _ in range(5):
            response = await control.post(
                "/_fake/webhooks/resend", json={"svix_id": issued[0]["svix_id"]}
            )
            assert response.status_code == 200
    await settle(runtime)
    assert len(mailbox.to("ada@example.com")) == 1


async def test_an_issued_event_with_a_new_event_id_but_the_same_code_sends_nothing(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    method_id = reservation["access_methods"][0]["access_method_id"]
    async with fake_control(fake_seam) as control:
        await control.post(
            "/_fake/emit",
            json={
                "event_type": "access_method.issued",
                "access_method_id": method_id,
                "access_grant_ids": [reservation["access_grant_id"]],
            },
        )
    await settle(runtime)
    assert len(mailbox.messages) == 1


async def test_smtp_down_then_up_delivers_once(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    mailbox.refuse_with = "451 try again later"
    await put_reservation(client, "bk-1")
    await settle(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "issued"
    assert reservation["deliveries"][0]["status"] == "retrying"
    assert reservation["deliveries"][0]["attempts"] == 1
    assert mailbox.messages == []

    mailbox.refuse_with = None
    assert await make_retries_due(runtime) == 1
    await settle(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "delivered"
    assert reservation["deliveries"][0]["attempts"] == 2
    assert len(mailbox.messages) == 1


async def test_a_phone_guest_gets_an_sms(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, settings_overrides: dict[str, Any]
) -> None:
    await put_reservation(client, "bk-1", guest={"name": "Grace", "phone": "+14155550100"})
    await settle(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "delivered"
    assert [(d["channel"], d["to"]) for d in reservation["deliveries"]] == [("sms", "+14155550100")]
    outbox = settings_overrides["GUESTKEY_DATA_DIR"] / "outbox"
    texts = [p.read_text() for p in outbox.rglob("*.txt")]
    code = reservation["access_methods"][0]["code"]
    assert len(texts) == 1 and code in texts[0]


async def test_a_cancelled_reservation_gets_no_message(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    async with fake_control(fake_seam) as control:
        await control.post("/_fake/auto_issue", json={"enabled": False})
    await put_reservation(client, "bk-1")
    await settle(runtime)
    grant_id = (await client.get("/v1/reservations/bk-1")).json()["access_grant_id"]
    await client.delete("/v1/reservations/bk-1")
    await settle(runtime)
    assert (await fake_state(fake_seam))["access_grants"] == []
    async with fake_control(fake_seam) as control:
        response = await control.post("/_fake/issue", json={"access_grant_id": grant_id})
        assert response.status_code in (404, 400)
    await settle(runtime)
    assert mailbox.messages == []
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "cancelled"


async def test_codes_are_encrypted_at_rest(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    from sqlalchemy import text

    await put_reservation(
        client, "bk-1", **{k: v for k, v in reservation_body().items() if k == "guest"}
    )
    await settle(runtime)
    code = (await client.get("/v1/reservations/bk-1")).json()["access_methods"][0]["code"]
    async with runtime.engine.connect() as connection:
        dump = await connection.scalar(text("SELECT string_agg(t::text, ' ') FROM access_method t"))
    assert code not in dump
