"""Every error body has one shape with a `code`; the timeline reads in time order, once."""

from __future__ import annotations

from typing import Any

import httpx

from app.runtime import Runtime
from tests.conftest import run_jobs, settle
from tests.factories import delivered_reservation, fail_next, put_reservation, reservation_body


async def test_a_field_error_has_a_code_and_a_plain_message(client: httpx.AsyncClient) -> None:
    body = reservation_body()
    body["guest"]["phone"] = "555-0100"
    response = await client.put("/v1/reservations/bk-1", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "invalid_input"
    [problem] = error["detail"]
    assert problem["loc"] == ["body", "guest", "phone"]
    assert problem["msg"] == "must be an E.164 phone number, like +14155550100"


async def test_an_unknown_route_and_a_bad_key_have_codes(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/reservations/nope")
    unauthorized = await client.get(
        "/v1/reservations/bk-1", headers={"Authorization": "Bearer wrong"}
    )
    assert missing.json()["code"] == "not_found"
    assert unauthorized.json()["code"] == "unauthorized"


async def test_the_two_conflicts_have_their_own_codes(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await put_reservation(client, "bk-1")
    no_code = await client.post("/v1/reservations/bk-1/resend")
    assert no_code.status_code == 409
    assert no_code.json()["code"] == "no_issued_code"
    assert "yet" in no_code.json()["detail"]  # pending: the code is still coming
    await client.delete("/v1/reservations/bk-1")
    resend = await client.post("/v1/reservations/bk-1/resend")
    put = await put_reservation(client, "bk-1")
    assert resend.status_code == put.status_code == 409
    assert resend.json()["code"] == put.json()["code"] == "reservation_cancelled"


async def test_resend_of_a_failed_reservation_says_it_failed(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await fail_next(
        fake_seam, status=400, error_type="invalid_input", endpoint="/access_grants/create"
    )
    await put_reservation(client, "bk-1")
    await run_jobs(runtime)
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "failed"
    response = await client.post("/v1/reservations/bk-1/resend")
    assert response.status_code == 409
    assert response.json()["code"] == "no_issued_code"
    assert "failed" in response.json()["detail"] and "yet" not in response.json()["detail"]


async def test_the_timeline_of_a_cancel_is_in_time_order_and_says_grant_deleted_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await delivered_reservation(client, runtime)
    await client.delete("/v1/reservations/bk-1")
    await settle(runtime)  # Seam's access_grant.deleted comes back as a webhook
    events = (await client.get("/v1/reservations/bk-1/events")).json()["events"]
    times = [event["at"] for event in events]
    assert times == sorted(times)
    assert [event["kind"] for event in events].count("grant_deleted") == 1


async def test_an_unexpected_error_is_a_500_in_the_same_shape(
    app: Any, client: httpx.AsyncClient
) -> None:
    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://guestkey.test", headers=client.headers
    ) as http:
        response = await http.get("/v1/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "code": "internal_error"}
