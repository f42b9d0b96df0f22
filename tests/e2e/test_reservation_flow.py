"""End to end: `guestkey serve` and `guestkey fake-seam` as real processes over real HTTP,
a real SMTP server, real PostgreSQL. The fake sends Svix-signed webhooks to guestkey."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Mailbox
from tests.e2e.conftest import E2E_API_KEY, Stack
from tests.e2e.processes import wait_for
from tests.factories import BACK_DOOR, FRONT_DOOR, mentions_code, reservation_body

pytestmark = pytest.mark.e2e


def clients(stack: Stack) -> tuple[httpx.Client, httpx.Client]:
    api = httpx.Client(
        base_url=stack.guestkey.url, headers={"Authorization": f"Bearer {E2E_API_KEY}"}
    )
    seam = httpx.Client(
        base_url=stack.fake_seam.url, headers={"Authorization": "Bearer seam_e2e_key"}
    )
    return api, seam


def test_a_reservation_ends_with_the_code_and_doors_in_the_guests_inbox(
    stack: Stack, mailbox: Mailbox
) -> None:
    api, seam = clients(stack)
    body = reservation_body()
    created = api.put("/v1/reservations/e2e-1", json=body)
    assert created.status_code == 201, created.text

    def delivered() -> dict[str, Any] | None:
        reservation: dict[str, Any] = api.get("/v1/reservations/e2e-1").json()
        return reservation if reservation["status"] == "delivered" else None

    reservation = wait_for(delivered)

    # One grant at Seam, with the stay's times and doors.
    grants = seam.get("/access_grants/list").json()["access_grants"]
    assert len(grants) == 1
    grant = grants[0]
    assert grant["access_grant_id"] == reservation["access_grant_id"]
    assert datetime.fromisoformat(grant["starts_at"]) == datetime.fromisoformat(body["starts_at"])
    assert datetime.fromisoformat(grant["ends_at"]) == datetime.fromisoformat(body["ends_at"])
    related = seam.post(
        "/access_methods/get_related", json={"access_method_ids": grant["access_method_ids"]}
    ).json()["batch"]
    assert sorted(device["device_id"] for device in related["devices"]) == sorted(
        [FRONT_DOOR.id, BACK_DOOR.id]
    )

    # The guest's email: the exact code Seam holds, and both doors by name.
    code = seam.get(
        "/access_methods/get", params={"access_method_id": grant["access_method_ids"][0]}
    ).json()["access_method"]["code"]
    messages = wait_for(lambda: mailbox.to("ada@example.com"))
    assert len(messages) == 1
    text = messages[0].get_body(preferencelist=("plain",)).get_content()
    html = messages[0].get_body(preferencelist=("html",)).get_content()
    for part in (text, html):
        assert code in part
        assert "Front Door" in part and "Back Door" in part
    assert "Seaside Loft" in messages[0]["Subject"]
    assert reservation["access_methods"][0]["code"] == code
    assert {door["name"] for door in reservation["doors"]} == {"Front Door", "Back Door"}
    assert [d["status"] for d in reservation["deliveries"]] == ["sent"]

    # An identical PUT changes nothing and makes no Seam call.
    calls_before = len(seam.get("/_fake/state").json()["calls"])
    again = api.put("/v1/reservations/e2e-1", json=body)
    assert again.status_code == 200
    time.sleep(0.5)
    assert len(seam.get("/_fake/state").json()["calls"]) == calls_before
    assert len(mailbox.messages) == 1

    # Redelivering the issued webhook five times sends nothing more.
    log = seam.get("/_fake/webhooks").json()["messages"]
    issued = next(m for m in log if m["event"]["event_type"] == "access_method.issued")
    for _ in range(5):
        assert (
            seam.post("/_fake/webhooks/resend", json={"svix_id": issued["svix_id"]}).status_code
            == 200
        )
    time.sleep(1.0)
    assert len(mailbox.messages) == 1

    # No PIN code in any line either process logged.
    stack.guestkey.stop()
    assert not mentions_code(stack.guestkey.log(), code)
    assert "seam_e2e_key" not in stack.guestkey.log()
    assert E2E_API_KEY not in stack.guestkey.log()
