"""The guest's page over HTTP: links in messages, what the page shows, the problem report."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from app.guests.models import GuestLink, GuestPage
from app.reservations.codes import FreshCodeRefused, request_fresh_code
from app.reservations.models import Reservation
from app.runtime import Runtime
from app.timeline import TimelineKind
from tests.conftest import Mailbox, settle
from tests.factories import BACK_DOOR, FRONT_DOOR, fake_control, put_reservation
from tests.guests.support import (
    SUPPORT_CONTACT,
    code_in,
    codes_of,
    guest_browser,
    link_in,
)
from tests.lifecycle.test_callbacks_and_timing import Receiver


async def delivered_stay(
    client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox, **overrides: Any
) -> tuple[str, str]:
    """A delivered reservation bk-1: (the path of its page, its code)."""
    await put_reservation(client, "bk-1", **overrides)
    await settle(runtime)
    (message,) = mailbox.messages
    return link_in(message), code_in(message)


async def timeline_kinds(client: httpx.AsyncClient) -> list[str]:
    events = (await client.get("/v1/reservations/bk-1/events")).json()["events"]
    return [event["kind"] for event in events]


async def test_the_message_links_to_a_page_with_the_doors_and_the_code_behind_a_button(
    app: Any, client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    path, code = await delivered_stay(
        client, runtime, mailbox, property_address="Rua das Flores 12\n1200-195 Lisboa"
    )
    async with guest_browser(app) as guest:
        page = await guest.get(path)
        assert page.status_code == 200
        assert "Rua das Flores 12<br>1200-195 Lisboa" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "Seaside Loft" in page.text and "Front Door" in page.text
        assert "Back Door" in page.text and "Ready" in page.text
        assert "Western European" in page.text  # the zone's everyday name
        assert SUPPORT_CONTACT in page.text
        assert code not in page.text  # behind the button
        shown = await guest.post(f"{path}/code", data={"lang": "en"})
        assert shown.status_code == 200 and code in shown.text
    assert TimelineKind.CODE_REVEALED in await timeline_kinds(client)


async def test_only_a_digest_of_the_token_is_stored(
    client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    path, _ = await delivered_stay(client, runtime, mailbox)
    token = path.removeprefix("/g/")
    async with runtime.engine.connect() as connection:
        dump = await connection.scalar(
            text("SELECT string_agg(row_to_json(guest_link)::text, ' ') FROM guest_link")
        )
    assert dump and token not in dump


async def test_the_sms_carries_the_link_and_the_code(
    app: Any, client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox, tmp_path: Any
) -> None:
    await put_reservation(
        client, "bk-1", guest={"name": "Ada", "phone": "+14155550100", "locale": "en"}
    )
    await settle(runtime)
    (sms,) = list((tmp_path / "data" / "outbox").glob("*.txt"))
    body = sms.read_text()
    (code,) = [c for state, c in await codes_of(runtime) if state == "current"]
    assert code in body and "https://stay.example.test/g/" in body


async def test_forged_malformed_and_expired_links_get_a_plain_404_page(
    app: Any, client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    path, code = await delivered_stay(client, runtime, mailbox)
    async with guest_browser(app) as guest:
        one_letter_off = path[:-1] + ("B" if path.endswith("A") else "A")
        for forged in (f"/g/{secrets.token_urlsafe(32)}", "/g/short", one_letter_off):
            page = await guest.get(forged)
            assert page.status_code == 404 and "Link not found" in page.text
            assert (await guest.post(f"{forged}/code")).status_code == 404
        # the stay ended two days ago
        async with runtime.sessionmaker() as session:
            await session.execute(
                text(
                    "UPDATE reservation SET starts_at = now() - interval '5 days', "
                    "ends_at = now() - interval '2 days'"
                )
            )
            await session.commit()
        expired = await guest.get(path)
        assert expired.status_code == 404 and code not in expired.text
        assert "text/html" in expired.headers["content-type"]


async def test_a_cancelled_stay_says_so_and_shows_no_code(
    app: Any, client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    path, code = await delivered_stay(client, runtime, mailbox)
    await client.delete("/v1/reservations/bk-1")
    await settle(runtime)
    async with guest_browser(app) as guest:
        page = await guest.get(path)
        assert page.status_code == 200 and "This stay was cancelled" in page.text
        assert "Show code" not in page.text and "Front Door" not in page.text
        shown = await guest.post(f"{path}/code")
        assert code not in shown.text and "This stay was cancelled" in shown.text


async def test_the_page_speaks_the_guests_language_and_switches(
    app: Any, client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    path, _ = await delivered_stay(
        client,
        runtime,
        mailbox,
        guest={"name": "Jean", "email": "jean@example.com", "locale": "fr"},
    )
    async with guest_browser(app) as guest:
        page = await guest.get(path)
        assert '<html lang="fr">' in page.text and "Afficher le code" in page.text
        german = await guest.get(path, params={"lang": "de"})
        assert '<html lang="de">' in german.text and "Code anzeigen" in german.text
        unknown = await guest.get(path, params={"lang": "xx"})
        assert '<html lang="fr">' in unknown.text


async def test_a_report_about_an_offline_door_explains_and_asks_for_no_new_code(
    app: Any,
    client: httpx.AsyncClient,
    runtime: Runtime,
    mailbox: Mailbox,
    receiver: Receiver,
    fake_seam: Any,
) -> None:
    path, code = await delivered_stay(client, runtime, mailbox)
    async with fake_control(fake_seam) as control:
        response = await control.post(
            "/_fake/device", json={"device_id": BACK_DOOR.id, "online": False}
        )
        assert response.status_code == 200
    async with guest_browser(app) as guest:
        page = await guest.post(f"{path}/problem", data={"door": BACK_DOOR.id})
    assert page.status_code == 200
    assert "The lock is offline" in page.text and "Back Door" in page.text
    await settle(runtime)
    assert await codes_of(runtime) == [("current", code)]
    assert len(mailbox.messages) == 1
    assert TimelineKind.GUEST_REPORTED_PROBLEM in await timeline_kinds(client)
    reported = [e for e in receiver.verified if e["type"] == "reservation.guest_reported_problem"]
    assert [e["data"]["problem"] for e in reported] == [
        {"door_id": BACK_DOOR.id, "finding": "door_offline"}
    ]


async def test_a_report_seam_sees_no_problem_with_gets_a_fresh_code_sent_once(
    app: Any,
    client: httpx.AsyncClient,
    runtime: Runtime,
    mailbox: Mailbox,
    receiver: Receiver,
) -> None:
    path, old_code = await delivered_stay(client, runtime, mailbox)
    async with guest_browser(app) as guest:
        page = await guest.post(f"{path}/problem", data={"door": FRONT_DOOR.id})
    assert page.status_code == 200
    await settle(runtime)
    codes = await codes_of(runtime)
    assert [state for state, _ in codes] == ["superseded", "current"]
    new_code = codes[1][1]
    assert new_code != old_code
    assert "Here is a new code" in page.text and new_code in page.text
    # the new code went out once, through the usual channel
    assert [code_in(m) for m in mailbox.messages] == [old_code, new_code]
    types = receiver.types()
    assert "reservation.guest_reported_problem" in types and "reservation.code_changed" in types
    assert "code" not in json.dumps([e["data"] for e in receiver.verified]).replace(
        "code_changed", ""
    ).replace("fresh_code", "")
    kinds = await timeline_kinds(client)
    assert TimelineKind.FRESH_CODE_REQUESTED in kinds and TimelineKind.CODE_SUPERSEDED in kinds


async def test_reports_are_limited_then_the_page_points_to_support(
    app: Any, client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    path, _ = await delivered_stay(client, runtime, mailbox)

    async def report() -> str:
        async with guest_browser(app) as guest:
            page = await guest.post(f"{path}/problem", data={})
        await settle(runtime)
        return page.text

    async def five_minutes_pass() -> None:
        async with runtime.sessionmaker() as session:
            await session.execute(
                update(GuestPage).values(
                    last_report_at=GuestPage.last_report_at - text("interval '6 minutes'")
                )
            )
            await session.commit()

    assert "Here is a new code" in await report()
    assert "You reported a problem a few minutes ago" in await report()
    await five_minutes_pass()
    assert "Here is a new code" in await report()
    await five_minutes_pass()
    third = await report()
    assert "Please contact support" in third and SUPPORT_CONTACT in third
    assert len([s for s, _ in await codes_of(runtime)]) == 3  # the first and two fresh ones


async def test_the_page_tells_the_guest_when_the_code_changed_since_their_last_visit(
    app: Any, client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox, fake_seam: Any
) -> None:
    path, code = await delivered_stay(client, runtime, mailbox)
    async with guest_browser(app) as guest:
        await guest.post(f"{path}/code")
        assert "changed since your last visit" not in (await guest.get(path)).text
        # the doors change: a new grant, a new code
        await put_reservation(client, "bk-1", device_ids=[FRONT_DOOR.id])
        await settle(runtime)
        page = await guest.get(path)
        assert "changed since your last visit" in page.text
        assert "Back Door" not in page.text
        shown = await guest.post(f"{path}/code")
        (new_code,) = [c for state, c in await codes_of(runtime) if state == "current"]
        assert new_code in shown.text and new_code != code
        assert "changed since your last visit" not in (await guest.get(path)).text


async def test_links_are_bound_to_their_reservation(
    app: Any, client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    await put_reservation(client, "bk-1")
    await put_reservation(
        client, "bk-2", guest={"name": "Bob", "email": "bob@example.com", "locale": "en"}
    )
    await settle(runtime)
    (ada,) = mailbox.to("ada@example.com")
    (bob,) = mailbox.to("bob@example.com")
    async with runtime.sessionmaker() as session:
        links = (
            await session.execute(
                select(Reservation.reservation_key, GuestLink.token_digest).join(
                    GuestLink, GuestLink.reservation_id == Reservation.id
                )
            )
        ).all()
    assert sorted(key for key, _ in links) == ["bk-1", "bk-2"]
    async with guest_browser(app) as guest:
        assert code_in(ada) in (await guest.post(f"{link_in(ada)}/code")).text
        assert code_in(bob) in (await guest.post(f"{link_in(bob)}/code")).text
        assert code_in(bob) not in (await guest.post(f"{link_in(ada)}/code")).text


async def test_a_fresh_code_is_refused_for_a_cancelled_stay(
    client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    await delivered_stay(client, runtime, mailbox)
    await client.delete("/v1/reservations/bk-1")
    await settle(runtime)
    async with runtime.sessionmaker() as session:
        reservation_id = await session.scalar(select(Reservation.id))
    assert reservation_id is not None
    with pytest.raises(FreshCodeRefused):
        await request_fresh_code(runtime, reservation_id=reservation_id, reason="operator")


async def test_odd_form_and_query_input_gets_the_page_not_an_error(
    app: Any, client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    path, _ = await delivered_stay(client, runtime, mailbox)
    async with guest_browser(app) as guest:
        assert (await guest.get(path, params={"lang": "x" * 500})).status_code == 200
        garbled = await guest.post(
            f"{path}/problem",
            content=b"\xff\xfe=%%%&door=" + b"9" * 300,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert garbled.status_code == 200
