"""The fake Seam does what real Seam does to a client: every event type, doors that cannot take
a code, codes delayed by an offline lock, backup codes under a new method, strict parameters."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from seam import AsyncSeam
from seam.exceptions import SeamHttpApiError, SeamHttpUnauthorizedError

from app.seam.client import GuestIdentity, SeamGateway
from app.seam.fake import SEEDED_DEVICES, SEEDED_ENTRANCES, FakeSeam
from app.seam.fake.router import SEAM_PATHS
from app.seam.fake.spec import endpoint_parameters, event_samples
from app.seam.fake.state import UserIdentity
from tests.seam.conftest import (
    FAKE_URL,
    RECEIVER_URL,
    Receiver,
    ResponseLog,
    assert_valid,
    make_sdk,
    schemas,
)
from tests.seam.test_fake_seam import create_grant, stay

FRONT_DOOR, BACK_DOOR, GARAGE, SHED, SIDE_GATE = (door.id for door in SEEDED_DEVICES)
LOBBY, GYM, BIKE_ROOM = (door.id for door in SEEDED_ENTRANCES)
SINCE_EVER = "2020-01-01T00:00:00Z"


def events_of(fake: FakeSeam, event_type: str) -> list[dict[str, Any]]:
    return [e for e in fake.state.events if e["event_type"] == event_type]


async def related_doors(seam: AsyncSeam, access_method_id: str) -> tuple[list[str], list[str]]:
    batch = await seam.access_methods.get_related(access_method_ids=[access_method_id])
    return (
        [d["device_id"] for d in batch.devices],
        [e["acs_entrance_id"] for e in batch.acs_entrances],
    )


# --- every event type ------------------------------------------------------------------------


def test_every_event_type_of_the_spec_has_a_sample_that_validates() -> None:
    samples = event_samples()
    spec_types = [
        variant["properties"]["event_type"]["enum"][0]
        for variant in schemas()["$defs"]["event"]["oneOf"]
    ]
    assert sorted(samples) == sorted(spec_types) and len(samples) == 109
    for sample in samples.values():
        assert_valid("event", sample)
    changed = samples["access_code.changed"]["changed_properties"]
    assert changed and {"property", "from", "to"} <= changed[0].keys()
    disconnected = samples["device.disconnected"]
    assert disconnected["device_id"] == FRONT_DOOR
    assert disconnected["error_code"] == "account_disconnected"
    assert disconnected["device_errors"][0]["created_at"].endswith("Z")


async def test_emitted_samples_reach_events_list_and_webhooks_with_fresh_ids(
    webhook_fake: FakeSeam, receiver: Receiver
) -> None:
    seam = make_sdk(webhook_fake, ResponseLog())
    before = datetime.now(UTC)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(webhook_fake.app), base_url=FAKE_URL
    ) as control:
        every = (await control.post("/_fake/emit_samples", json={})).json()["events"]
        overridden = await control.post(
            "/_fake/emit_samples",
            json={
                "event_types": ["access_method.issued"],
                "fields": {"access_method_id": BACK_DOOR, "device_id": GARAGE},
            },
        )
        unknown = await control.post("/_fake/emit_samples", json={"event_types": ["no.such"]})

    listed = await seam.events.list(since=SINCE_EVER, limit=500)
    assert len(every) == len(listed) - 1 == 109
    assert {e.event_type for e in listed} == set(event_samples())
    samples = event_samples()
    assert all(e["event_id"] != samples[e["event_type"]]["event_id"] for e in every)
    assert all(
        datetime.fromisoformat(e["created_at"]) >= before - timedelta(seconds=1) for e in every
    )
    [issued] = overridden.json()["events"]
    assert issued["access_method_id"] == BACK_DOOR and "device_id" not in issued
    assert unknown.status_code == 400
    await receiver.wait_for(lambda d: True, count=110)
    assert receiver.rejected == []


# --- doors that cannot take a code -----------------------------------------------------------


async def test_lock_without_keypad_is_left_out_with_warning_error_and_event(
    seam: AsyncSeam, fake: FakeSeam
) -> None:
    grant = await create_grant(seam, device_ids=[FRONT_DOOR, SHED], acs_entrance_ids=[])
    assert [(w["warning_code"], w["device_id"]) for w in grant.warnings] == [
        ("device_does_not_support_access_codes", SHED)
    ]
    [error] = grant.errors
    assert error["error_code"] == "cannot_create_requested_access_methods"
    assert error["missing_device_ids"] == [SHED]
    [event] = events_of(fake, "access_grant.could_not_create_requested_access_methods")
    assert event["missing_device_ids"] == [SHED]
    assert event["access_grant_id"] == grant.access_grant_id and "Shed" in event["error_message"]

    await fake.drain()
    method = await seam.access_methods.get(access_method_id=grant.access_method_ids[0])
    assert method.is_issued
    assert await related_doors(seam, method.access_method_id) == ([FRONT_DOOR], [])


async def test_card_only_entrance_is_left_out_and_named_in_the_error(
    seam: AsyncSeam, fake: FakeSeam
) -> None:
    grant = await create_grant(seam, device_ids=[], acs_entrance_ids=[LOBBY, BIKE_ROOM])
    [error] = grant.errors
    assert "Bike Room" in error["message"]
    assert "missing_device_ids" not in fake.state.grants[grant.access_grant_id].errors[0]
    assert grant.warnings == []
    await fake.drain()
    assert await related_doors(seam, grant.access_method_ids[0]) == ([], [LOBBY])
    granted = events_of(fake, "access_grant.access_granted_to_door")
    assert [e["acs_entrance_id"] for e in granted] == [LOBBY]


async def test_grant_on_the_pleasant_doors_has_no_warning_or_error(seam: AsyncSeam) -> None:
    grant = await create_grant(seam, space_keys=["whole-property"])
    assert (grant.warnings, grant.errors) == ([], [])


async def test_code_for_an_offline_lock_is_delayed_until_the_lock_is_back_online(
    seam: AsyncSeam, raw: httpx.AsyncClient, fake: FakeSeam
) -> None:
    grant = await create_grant(seam, device_ids=[FRONT_DOOR, SIDE_GATE], acs_entrance_ids=[])
    method_id = grant.access_method_ids[0]
    await fake.drain()
    method = await seam.access_methods.get(access_method_id=method_id)
    assert not method.is_issued
    assert [w["warning_code"] for w in method.warnings] == ["delay_in_issuing"]
    [delayed] = events_of(fake, "access_method.delay_in_issuing")
    assert delayed["access_method_id"] == method_id
    assert await related_doors(seam, method_id) == ([], [])

    answer = await raw.post("/_fake/device", json={"device_id": SIDE_GATE, "online": True})
    assert answer.json()["device"]["properties"]["online"] is True
    assert events_of(fake, "device.connected")[0]["device_id"] == SIDE_GATE
    method = await seam.access_methods.get(access_method_id=method_id)
    assert method.is_issued and method.warnings == []
    assert await related_doors(seam, method_id) == ([FRONT_DOOR, SIDE_GATE], [])

    await raw.post("/_fake/device", json={"device_id": SIDE_GATE, "online": False})
    assert events_of(fake, "device.disconnected")[0]["device_id"] == SIDE_GATE
    assert (await seam.devices.get(device_id=SIDE_GATE)).errors[0]["error_code"] == (
        "device_offline"
    )


async def test_lock_can_lose_its_keypad_at_run_time_until_reset(
    seam: AsyncSeam, raw: httpx.AsyncClient
) -> None:
    await raw.post("/_fake/device", json={"device_id": GARAGE, "can_take_codes": False})
    garage = await seam.devices.get(device_id=GARAGE)
    assert (garage.can_program_online_access_codes, garage.can_unlock_with_code) == (False, False)
    assert "access_code" not in garage.capabilities_supported
    grant = await create_grant(seam, device_ids=[GARAGE, BACK_DOOR], acs_entrance_ids=[])
    assert grant.errors[0]["missing_device_ids"] == [GARAGE]

    await raw.post("/_fake/reset")
    assert (await seam.devices.get(device_id=GARAGE)).can_program_online_access_codes


async def test_issue_delay_is_configurable() -> None:
    fake = FakeSeam(issue_delay=0.3)
    seam = make_sdk(fake, ResponseLog())
    try:
        grant = await create_grant(seam)
        await asyncio.sleep(0.1)
        method_id = grant.access_method_ids[0]
        assert not (await seam.access_methods.get(access_method_id=method_id)).is_issued
        assert await fake.drain()
        assert (await seam.access_methods.get(access_method_id=method_id)).is_issued
    finally:
        await fake.aclose()


async def test_related_doors_are_named_only_once_the_code_is_issued(
    seam: AsyncSeam, raw: httpx.AsyncClient
) -> None:
    await raw.post("/_fake/auto_issue", json={"enabled": False})
    grant = await create_grant(seam)
    method_id = grant.access_method_ids[0]
    batch = await seam.access_methods.get_related(access_method_ids=[method_id])
    assert (batch.devices, batch.acs_entrances) == ([], [])
    assert batch.spaces and batch.access_grants

    await raw.post("/_fake/issue", json={"access_method_id": method_id})
    assert await related_doors(seam, method_id) == ([FRONT_DOOR, BACK_DOOR], [LOBBY])


# --- backup codes and more methods -----------------------------------------------------------


async def test_backup_code_is_a_new_issued_method_naming_the_original(
    seam: AsyncSeam, raw: httpx.AsyncClient, fake: FakeSeam
) -> None:
    grant = await create_grant(seam)
    await fake.drain()
    original_id = grant.access_method_ids[0]
    original = await seam.access_methods.get(access_method_id=original_id)
    answer = await raw.post("/_fake/backup_code", json={"access_method_id": original_id})
    backup_id = answer.json()["access_method"]["access_method_id"]

    backup = await seam.access_methods.get(access_method_id=backup_id)
    assert backup_id != original_id and backup.is_issued and backup.code != original.code
    [warning] = backup.warnings
    assert warning["warning_code"] == "pulled_backup_access_code"
    assert warning["original_access_method_id"] == original_id
    issued = events_of(fake, "access_method.issued")[-1]
    assert (issued["access_method_id"], issued["is_backup_code"]) == (backup_id, True)
    assert issued["code"] == backup.code
    assert issued["access_grant_ids"] == [grant.access_grant_id]
    assert issued["access_grant_keys"] == ["res-1"]
    after = await seam.access_grants.get(access_grant_id=grant.access_grant_id)
    assert after.access_method_ids == [original_id, backup_id]
    assert (await seam.access_methods.get(access_method_id=original_id)).code == original.code


async def test_requested_access_methods_join_the_grant_and_are_issued_after_the_delay(
    seam: AsyncSeam, fake: FakeSeam
) -> None:
    grant = await create_grant(seam, device_ids=[FRONT_DOOR, SHED], acs_entrance_ids=[])
    updated = await seam.access_grants.request_access_methods(
        access_grant_id=grant.access_grant_id, requested_access_methods=[{"mode": "code"}]
    )
    [added] = set(updated.access_method_ids) - set(grant.access_method_ids)
    assert events_of(fake, "access_method.created")[-1]["access_method_id"] == added
    await fake.drain()
    assert (await seam.access_methods.get(access_method_id=added)).is_issued
    assert await related_doors(seam, added) == ([FRONT_DOOR], [])


# --- identities, strict parameters, API keys -------------------------------------------------


async def test_identity_search_is_case_sensitive_but_email_uniqueness_is_not(
    seam: AsyncSeam,
) -> None:
    await create_grant(
        seam,
        user_identity={
            "full_name": "Ada",
            "email_address": "Ada@Example.com",
            "phone_number": "+15555550100",
        },
    )
    assert await seam.user_identities.list(search="ada@example.com") == []
    assert len(await seam.user_identities.list(search="Ada@Example.com")) == 1
    with pytest.raises(SeamHttpApiError) as taken:
        await create_grant(seam, "res-2", user_identity={"email_address": "ada@EXAMPLE.com"})
    assert taken.value.code == "user_identity_email_address_taken"
    other_phone = await create_grant(seam, "res-3", user_identity={"phone_number": "+15555550101"})
    assert other_phone.user_identity_id


async def test_unknown_parameters_are_refused_naming_them(raw: httpx.AsyncClient) -> None:
    refused = [
        await raw.post("/devices/list", json={"colour": "red"}),
        await raw.get("/devices/list", params={"_strict": "true", "colour": "red"}),
        await raw.post(
            "/access_grants/create",
            json={
                "user_identity": {"full_name": "Ed", "nickname": "E"},
                "device_ids": [FRONT_DOOR],
                "requested_access_methods": [{"mode": "code"}],
                **stay(),
            },
        ),
    ]
    for response, name in zip(refused, ["colour", "colour", "nickname"], strict=True):
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_input"
        assert name in response.json()["error"]["message"]
    assert (await raw.get("/devices/list", params={"_strict": "true"})).status_code == 200


async def test_every_call_guestkey_makes_through_its_gateway_passes_strict_mode(
    fake: FakeSeam,
) -> None:
    gateway = SeamGateway.connect(
        api_key="seam_fake_key", endpoint=FAKE_URL, transport=httpx.ASGITransport(fake.app)
    )
    guest = GuestIdentity("Ada Guest", "ada@example.com", None)
    try:
        now = datetime.now(UTC)
        grant = await gateway.create_grant(
            access_grant_key="res-1",
            name="Stay",
            guest=guest,
            starts_at=now + timedelta(days=1),
            ends_at=now + timedelta(days=2),
            device_ids=[FRONT_DOOR],
            acs_entrance_ids=[LOBBY],
            space_ids=[],
        )
        assert await gateway.find_grant("res-1") == await gateway.get_grant(grant.access_grant_id)
        await gateway.update_grant_times(
            grant.access_grant_id,
            starts_at=now + timedelta(days=2),
            ends_at=now + timedelta(days=3),
        )
        assert await gateway.find_user_identity(guest)
        await fake.drain()
        method_id = grant.access_method_ids[0]
        assert (await gateway.get_access_method(method_id)).is_issued
        assert len(await gateway.list_access_methods(grant.access_grant_id)) == 1
        assert {door.id for door in await gateway.doors_of([method_id])} == {FRONT_DOOR, LOBBY}
        assert await gateway.list_events(
            after=now - timedelta(minutes=1),
            before=now + timedelta(minutes=1),
            event_types={"access_method.issued"},
        )
        assert await gateway.list_devices(device_ids=[FRONT_DOOR])
        assert await gateway.list_entrances(acs_entrance_ids=[LOBBY])
        assert await gateway.list_spaces()
        assert await gateway.delete_grant(grant.access_grant_id)
    finally:
        await gateway.aclose()
    assert [c for c in fake.state.calls if c.status != 200] == []


async def test_the_guests_identity_is_found_past_the_first_page_of_a_search(
    fake: FakeSeam,
) -> None:
    """Seam's search matches substrings: the guest's email is part of many others' emails, and
    her name is as common."""

    def identity(name: str, email: str) -> UserIdentity:
        made = UserIdentity(str(uuid.uuid4()), datetime.now(UTC), name, email)
        fake.state.user_identities[made.user_identity_id] = made
        return made

    for index in range(130):
        identity("Ada", f"n{index}.ada@example.com")  # and as common a name
    ada = identity("Ada", "ada@example.com")
    gateway = SeamGateway.connect(
        api_key="seam_fake_key", endpoint=FAKE_URL, transport=httpx.ASGITransport(fake.app)
    )
    try:
        found = await gateway.find_user_identity(GuestIdentity("Ada", "ada@example.com", None))
    finally:
        await gateway.aclose()
    assert found == ada.user_identity_id
    searches = [c for c in fake.state.calls if c.path == "/user_identities/list"]
    assert len(searches) == 2  # two pages of 100 for the email, which finds her


async def test_only_the_configured_api_key_is_accepted_and_can_be_made_forbidden() -> None:
    fake = FakeSeam(api_key="seam_right_key")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(fake.app), base_url=FAKE_URL
        ) as http:
            wrong = await http.post(
                "/devices/list", headers={"Authorization": "Bearer seam_wrong_key"}
            )
            right = await http.post(
                "/devices/list", headers={"Authorization": "Bearer seam_right_key"}
            )
            await http.post("/_fake/api_key", json={"forbidden": True})
            forbidden = await http.post(
                "/devices/list", headers={"Authorization": "Bearer seam_right_key"}
            )
        assert wrong.status_code == 401
        assert wrong.json() == {
            "error": {"type": "unauthorized", "message": "Unauthorized"},
            "ok": False,
        }
        assert right.status_code == 200
        assert forbidden.status_code == 403 and forbidden.json()["error"]["type"] == "forbidden"
        seam = AsyncSeam(
            api_key="seam_wrong_key",
            endpoint=FAKE_URL,
            httpx_options={"transport": httpx.ASGITransport(fake.app)},
        )
        with pytest.raises(SeamHttpUnauthorizedError):
            await seam.devices.list()
    finally:
        await fake.aclose()


# --- the workspace and its webhooks ----------------------------------------------------------


async def test_webhook_made_through_the_api_gets_its_event_types_signed_with_its_secret(
    receiver: Receiver,
) -> None:
    fake = FakeSeam(webhook_transport=httpx.ASGITransport(receiver.app), issue_delay=0.01)
    seam = make_sdk(fake, ResponseLog())
    try:
        webhook = await seam.webhooks.create(url=RECEIVER_URL, event_types=["access_grant.created"])
        receiver.secret = webhook.secret
        first = await create_grant(seam, "res-1")
        [delivery] = await receiver.wait_for(lambda d: True)
        assert delivery.event["access_grant_id"] == first.access_grant_id
        await seam.webhooks.update(webhook_id=webhook.webhook_id, event_types=["*"])
        await create_grant(seam, "res-2")
        await fake.drain()
        assert len(receiver.deliveries) > 2
        await seam.webhooks.delete(webhook_id=webhook.webhook_id)
        count = len(receiver.deliveries)
        await create_grant(seam, "res-3")
        await fake.drain()
        assert len(receiver.deliveries) == count and receiver.rejected == []
        with pytest.raises(SeamHttpApiError) as gone:
            await seam.webhooks.get(webhook_id=webhook.webhook_id)
        assert gone.value.code == "webhook_not_found"
    finally:
        await fake.aclose()


def test_strict_mode_knows_the_parameters_of_every_endpoint_the_fake_serves() -> None:
    assert all(endpoint_parameters(path) is not None for path in SEAM_PATHS)


def test_event_validation_refuses_a_malformed_or_unknown_event() -> None:
    issued = event_samples()["access_method.issued"]
    del issued["access_grant_ids"]
    for malformed in (issued, {**event_samples()["access_grant.created"], "event_type": "x.y"}):
        with pytest.raises(AssertionError):
            assert_valid("event", malformed)
