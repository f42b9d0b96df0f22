"""End to end: real processes, real HTTP, real PostgreSQL."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import E2E_API_KEY, Stack
from tests.factories import BACK_DOOR, FRONT_DOOR, reservation_body

pytestmark = pytest.mark.e2e


def wait_for(predicate: Any, timeout: float = 20, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def test_put_reservation_ends_in_one_grant_at_seam(stack: Stack) -> None:
    api = httpx.Client(
        base_url=stack.guestkey.url, headers={"Authorization": f"Bearer {E2E_API_KEY}"}
    )
    seam = httpx.Client(
        base_url=stack.fake_seam.url, headers={"Authorization": "Bearer seam_e2e_key"}
    )
    body = reservation_body()
    created = api.put("/v1/reservations/e2e-1", json=body)
    assert created.status_code == 201, created.text

    def granted() -> dict[str, Any] | None:
        reservation: dict[str, Any] = api.get("/v1/reservations/e2e-1").json()
        return reservation if reservation["status"] not in ("pending",) else None

    reservation = wait_for(granted)
    assert reservation["status"] in ("granted", "issued", "delivered"), reservation

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
    assert {device["display_name"] for device in related["devices"]} == {"Front Door", "Back Door"}

    # An identical PUT makes no Seam call.
    calls_before = len(seam.get("/_fake/state").json()["calls"])
    again = api.put("/v1/reservations/e2e-1", json=body)
    assert again.status_code == 200
    time.sleep(0.3)
    state = seam.get("/_fake/state").json()
    assert len(state["calls"]) == calls_before + 0  # /_fake/state itself is not a Seam call
