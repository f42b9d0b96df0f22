"""The sync job against the fake Seam: grants created once, failures retried or recorded,
jobs enqueued if and only if the reservation's write commits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import delete, select, text

from app.reservations import service
from app.reservations.models import Reservation, SeamIdentity
from app.reservations.schemas import ReservationIn
from app.runtime import Runtime
from app.seam.fake.schemas import InlineUserIdentity
from tests.conftest import job_counts, make_retries_due, run_jobs
from tests.factories import (
    BACK_DOOR,
    FRONT_DOOR,
    create_in_flight,
    doors_not_checkable,
    fail_next,
    fake_control,
    fake_state,
    grant_device_ids,
    put_reservation,
    reservation_body,
    seam_calls,
    stay,
)


@pytest.fixture(autouse=True)
async def codes_not_issued(fake_seam: Any) -> None:
    """These tests are about the grant: the fake issues no code, so no webhook follows."""
    async with fake_control(fake_seam) as control:
        await control.post("/_fake/auto_issue", json={"enabled": False})


async def grants_at_fake(fake: Any) -> list[dict[str, Any]]:
    grants: list[dict[str, Any]] = (await fake_state(fake))["access_grants"]
    return grants


async def test_sync_creates_one_grant_with_the_stays_times_and_doors(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    body = reservation_body()
    await client.put("/v1/reservations/bk-1", json=body)
    await run_jobs(runtime)

    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] in ("granted", "issued", "delivered")
    grants = await grants_at_fake(fake_seam)
    assert len(grants) == 1
    grant = grants[0]
    assert grant["access_grant_id"] == reservation["access_grant_id"]
    assert datetime.fromisoformat(grant["starts_at"]) == datetime.fromisoformat(body["starts_at"])
    assert datetime.fromisoformat(grant["ends_at"]) == datetime.fromisoformat(body["ends_at"])
    assert grant_device_ids(fake_seam, grant["access_grant_id"]) == sorted(
        [FRONT_DOOR.id, BACK_DOOR.id]
    )
    assert grant["access_grant_key"].startswith("guestkey-")
    methods = reservation["access_methods"]
    assert [m["access_method_id"] for m in methods] == grant["access_method_ids"]
    assert set(await job_counts(runtime)) == {"succeeded"}
    kinds = [e["kind"] for e in (await client.get("/v1/reservations/bk-1/events")).json()["events"]]
    assert kinds[:2] == ["requested", "grant_created"]


async def test_a_returning_guest_reuses_their_seam_identity(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await put_reservation(client, "bk-1")
    await put_reservation(client, "bk-2")
    await run_jobs(runtime)
    state = await fake_state(fake_seam)
    assert len(state["access_grants"]) == 2
    assert len(state["user_identities"]) == 1
    assert {g["user_identity_id"] for g in state["access_grants"]} == {
        state["user_identities"][0]["user_identity_id"]
    }


def grant_calls(state: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (call["path"], call["status"])
        for call in state["calls"]
        if call["path"].startswith(("/access_grants/", "/user_identities/"))
    ]


async def test_a_returning_guest_guestkey_knows_costs_one_seam_call_like_a_new_one(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await put_reservation(client, "bk-1")
    await run_jobs(runtime)
    assert grant_calls(await fake_state(fake_seam)) == [("/access_grants/create", 200)]

    await put_reservation(client, "bk-2")
    await run_jobs(runtime)
    # The identity the first grant made is stored and named: Seam refuses nothing.
    assert grant_calls(await fake_state(fake_seam))[1:] == [("/access_grants/create", 200)]
    for key in ("bk-1", "bk-2"):
        assert (await client.get(f"/v1/reservations/{key}")).json()["status"] == "granted"


async def test_a_returning_guest_guestkey_does_not_know_is_found_at_seam(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await put_reservation(client, "bk-1")
    await run_jobs(runtime)
    async with runtime.sessionmaker() as session:  # as if bk-1 had been made elsewhere
        await session.execute(delete(SeamIdentity))
        await session.commit()

    await put_reservation(client, "bk-2")
    await run_jobs(runtime)
    assert grant_calls(await fake_state(fake_seam))[1:] == [
        ("/access_grants/create", 400),  # the guest's inline identity exists
        ("/access_grants/get", 404),  # not a retried create whose answer was lost
        ("/user_identities/get", 200),
        ("/access_grants/create", 200),
    ]
    assert (await client.get("/v1/reservations/bk-2")).json()["status"] == "granted"


async def test_an_identity_made_outside_guestkey_is_found_whatever_its_letter_case(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    # An identity another system made for the same guest, in other letter case.
    existing = fake_seam.state.add_user_identity(
        InlineUserIdentity(full_name="Ada Lovelace", email_address="Ada.Lovelace@Example.com"),
        datetime.now(UTC),
    )
    await put_reservation(
        client, "bk-1", guest={"name": "Ada Lovelace", "email": "ada.lovelace@example.com"}
    )
    await run_jobs(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "granted", reservation
    grant = fake_seam.state.grants[reservation["access_grant_id"]]
    assert grant.user_identity_id == existing.user_identity_id


async def test_seam_down_keeps_the_reservation_pending_then_grants_once(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await fail_next(fake_seam, count=3, status=503, endpoint="/access_grants/create")
    await put_reservation(client, "bk-1")

    for _ in range(3):
        await run_jobs(runtime)
        reservation = (await client.get("/v1/reservations/bk-1")).json()
        assert reservation["status"] == "pending"
        assert "retrying" in reservation["last_error"]
        assert await grants_at_fake(fake_seam) == []
        assert await make_retries_due(runtime) == 1

    await run_jobs(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "granted"
    assert reservation["last_error"] is None
    assert len(await grants_at_fake(fake_seam)) == 1


async def test_retry_after_from_seam_sets_the_next_attempt(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await fail_next(
        fake_seam, count=1, status=429, retry_after=120, endpoint="/access_grants/create"
    )
    await put_reservation(client, "bk-1")
    await run_jobs(runtime)
    async with runtime.engine.connect() as connection:
        from sqlalchemy import text

        delay = await connection.scalar(
            text(
                "SELECT extract(epoch FROM scheduled_at - now()) FROM procrastinate_jobs "
                "WHERE status = 'todo'"
            )
        )
    assert delay is not None and 115 <= float(delay) <= 122


async def lose_create_answer(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> dict[str, Any]:
    """PUT bk-1 while Seam makes the grant but its answer is lost; the sync waits for its
    retry. Returns the grant Seam made."""
    await fail_next(
        fake_seam, count=1, status=502, endpoint="/access_grants/create", after_success=True
    )
    await put_reservation(client, "bk-1")
    await run_jobs(runtime)
    [made] = await grants_at_fake(fake_seam)
    return made


async def test_lost_create_response_makes_no_second_grant(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await lose_create_answer(client, runtime, fake_seam)
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "pending"

    await make_retries_due(runtime)
    await run_jobs(runtime)
    grants = await grants_at_fake(fake_seam)
    assert len(grants) == 1
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "granted"
    assert reservation["access_grant_id"] == grants[0]["access_grant_id"]
    # The retry creates first; Seam refuses the key it already holds, and the grant is found by it.
    creates = await seam_calls(fake_seam, "/access_grants/create")
    assert [call["status"] for call in creates] == [502, 400], creates


async def test_a_change_made_while_a_lost_create_awaits_its_retry_reaches_seam(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    """The grant a lost answer made holds the old times and doors; the retry finds it by key
    and converges it: the new times moved onto it, then the new doors by replacing it."""
    lost = await lose_create_answer(client, runtime, fake_seam)
    starts_at, ends_at = stay(days_from_now=9, nights=2)
    changed = reservation_body(starts_at=starts_at, ends_at=ends_at, device_ids=[BACK_DOOR.id])
    assert (await client.put("/v1/reservations/bk-1", json=changed)).status_code == 200

    await make_retries_due(runtime)
    await run_jobs(runtime)

    [grant] = await grants_at_fake(fake_seam)
    assert grant["access_grant_id"] != lost["access_grant_id"]  # doors: a new grant
    assert grant_device_ids(fake_seam, grant["access_grant_id"]) == [BACK_DOOR.id]
    assert datetime.fromisoformat(grant["starts_at"]) == datetime.fromisoformat(starts_at)
    assert datetime.fromisoformat(grant["ends_at"]) == datetime.fromisoformat(ends_at)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["access_grant_id"] == grant["access_grant_id"]
    assert reservation["status"] == "granted"


async def test_a_time_change_made_while_a_lost_create_awaits_its_retry_moves_the_grant(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    lost = await lose_create_answer(client, runtime, fake_seam)
    starts_at, ends_at = stay(days_from_now=9, nights=2)
    changed = reservation_body(starts_at=starts_at, ends_at=ends_at)
    assert (await client.put("/v1/reservations/bk-1", json=changed)).status_code == 200

    await make_retries_due(runtime)
    await run_jobs(runtime)

    [grant] = await grants_at_fake(fake_seam)
    assert grant["access_grant_id"] == lost["access_grant_id"]  # same doors: kept, moved
    assert datetime.fromisoformat(grant["starts_at"]) == datetime.fromisoformat(starts_at)
    assert datetime.fromisoformat(grant["ends_at"]) == datetime.fromisoformat(ends_at)


async def test_unknown_device_fails_the_reservation_with_the_reason(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    await doors_not_checkable(fake_seam)  # else the PUT itself is refused (422)
    await put_reservation(client, "bk-1", device_ids=[unknown])
    await run_jobs(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "failed"
    assert "not_found" in reservation["last_error"]
    assert await grants_at_fake(fake_seam) == []
    assert await job_counts(runtime) == {"succeeded": 1}  # given up, not retried
    events = (await client.get("/v1/reservations/bk-1/events")).json()["events"]
    assert events[-1]["kind"] == "failed" and events[-1]["reason"] == reservation["last_error"]


async def test_a_corrected_failed_reservation_is_tried_again(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await doors_not_checkable(fake_seam)
    await put_reservation(client, "bk-1", device_ids=["00000000-0000-4000-8000-000000000000"])
    await run_jobs(runtime)
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "failed"
    await put_reservation(client, "bk-1")
    await run_jobs(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "granted" and reservation["last_error"] is None


async def test_seam_rejecting_our_api_key_is_retried_not_failed(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await fail_next(fake_seam, count=1, status=401, endpoint="/access_grants/create")
    await put_reservation(client, "bk-1")
    await run_jobs(runtime)
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "pending"
    await make_retries_due(runtime)
    await run_jobs(runtime)
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "granted"


async def test_a_reservation_and_its_first_job_are_written_together(runtime: Runtime) -> None:
    """One statement writes a new reservation and its first sync job: when the job cannot be
    written, neither is the reservation (and the PUT fails); otherwise both are."""
    client_id = next(iter(runtime.env_key_digests.values()))
    data = ReservationIn.model_validate(reservation_body())
    refuse_jobs = "ALTER TABLE procrastinate_jobs ADD CONSTRAINT refuse CHECK (false) NOT VALID"
    async with runtime.engine.begin() as connection:
        await connection.execute(text(refuse_jobs))
    try:
        with pytest.raises(psycopg.errors.CheckViolation):
            await service.put_reservation(
                runtime.sessionmaker, client_id=client_id, reservation_key="bk-refused", data=data
            )
    finally:
        async with runtime.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE procrastinate_jobs DROP CONSTRAINT refuse"))
    assert await job_counts(runtime) == {}
    async with runtime.sessionmaker() as session:
        assert await session.scalar(select(Reservation)) is None

    await service.put_reservation(
        runtime.sessionmaker, client_id=client_id, reservation_key="bk-written", data=data
    )
    assert await job_counts(runtime) == {"todo": 1}
    async with runtime.sessionmaker() as session:
        assert (await session.scalars(select(Reservation.reservation_key))).all() == ["bk-written"]


async def test_changes_during_a_running_sync_are_applied_after_it(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    """A slow create; a door change arrives meanwhile; the end state has the new doors."""
    worker = await create_in_flight(client, runtime, fake_seam)
    await put_reservation(client, "bk-1", device_ids=[BACK_DOOR.id])
    await worker
    await run_jobs(runtime)
    grants = await grants_at_fake(fake_seam)
    assert [grant_device_ids(fake_seam, g["access_grant_id"]) for g in grants] == [[BACK_DOOR.id]]
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["access_grant_id"] == grants[0]["access_grant_id"]


@pytest.mark.parametrize("concurrent_puts", [5])
async def test_concurrent_identical_puts_make_one_reservation(
    client: httpx.AsyncClient, runtime: Runtime, concurrent_puts: int
) -> None:
    body = reservation_body()
    responses = await asyncio.gather(
        *(client.put("/v1/reservations/bk-race", json=body) for _ in range(concurrent_puts))
    )
    assert sorted(r.status_code for r in responses) == [200] * (concurrent_puts - 1) + [201]
    assert await job_counts(runtime) == {"todo": 1}
