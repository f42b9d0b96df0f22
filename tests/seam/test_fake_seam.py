"""The fake Seam, driven through the official SDK and raw HTTP, checked against Seam's spec."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from seam import AsyncSeam
from seam.exceptions import SeamHttpApiError, SeamHttpInvalidInputError

from app.seam.fake import SEEDED_DEVICES, SEEDED_ENTRANCES, SEEDED_SPACES, FakeSeam
from app.seam.fake.seed import seeded_id
from app.seam.fake.spec import EXTRACT_FILE
from tests.seam.conftest import (
    SCHEMAS_FILE,
    Receiver,
    ResponseLog,
    assert_valid,
    make_sdk,
)

FRONT_DOOR, BACK_DOOR, GARAGE, SHED, SIDE_GATE = (door.id for door in SEEDED_DEVICES)
LOBBY, GYM, BIKE_ROOM = (door.id for door in SEEDED_ENTRANCES)
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = REPO_ROOT.parent / "shared" / "seam" / "openapi.json"


def stay(days_from_now: int = 1, nights: int = 2) -> dict[str, str]:
    starts_at = datetime.now(UTC) + timedelta(days=days_from_now)
    return {
        "starts_at": starts_at.isoformat(),
        "ends_at": (starts_at + timedelta(days=nights)).isoformat(),
    }


async def create_grant(seam: AsyncSeam, key: str = "res-1", **overrides: Any) -> Any:
    params: dict[str, Any] = {
        "user_identity": {
            "full_name": "Ada Guest",
            "email_address": f"{key}@example.com",
            "user_identity_key": f"guest-{key}",
        },
        "device_ids": [FRONT_DOOR, BACK_DOOR],
        "acs_entrance_ids": [LOBBY],
        "requested_access_methods": [{"mode": "code"}],
        "access_grant_key": key,
        "name": f"Stay {key}",
        **stay(),
    }
    params.update(overrides)
    return await seam.access_grants.create(**params)


async def fake_state(raw: httpx.AsyncClient) -> dict[str, Any]:
    response = await raw.get("/_fake/state")
    return dict(response.json())


# --- shapes ----------------------------------------------------------------------------------


async def test_sdk_drives_every_endpoint_and_each_response_matches_seam_spec(
    seam: AsyncSeam, fake: FakeSeam, response_log: ResponseLog
) -> None:
    grant = await create_grant(seam)
    await fake.drain()
    method_id = grant.access_method_ids[0]

    assert (
        await seam.access_grants.get(access_grant_id=grant.access_grant_id)
    ).name == "Stay res-1"
    assert (await seam.access_grants.get(access_grant_key="res-1")).access_grant_id == (
        grant.access_grant_id
    )
    assert len(await seam.access_grants.list(access_grant_key="res-1")) == 1
    assert len(await seam.access_grants.list(user_identity_id=grant.user_identity_id)) == 1
    await seam.access_grants.update(access_grant_id=grant.access_grant_id, name="Renamed")
    method = await seam.access_methods.get(access_method_id=method_id)
    assert method.is_issued and method.code
    assert [
        m.access_method_id for m in await seam.access_methods.list(access_grant_key="res-1")
    ] == [method_id]
    batch = await seam.access_methods.get_related(access_method_ids=[method_id])
    assert {d["display_name"] for d in batch.devices} == {"Front Door", "Back Door"}
    assert [e["display_name"] for e in batch.acs_entrances] == ["Lobby"]
    assert batch.spaces and batch.spaces[0]["display_name"]
    assert await seam.events.list(since="2020-01-01T00:00:00Z")
    assert len(await seam.devices.list()) == 5
    assert (await seam.devices.get(device_id=GARAGE)).display_name == "Garage"
    assert (await seam.devices.get(name="Shed")).device_id == SHED
    assert len(await seam.acs.entrances.list()) == 3
    assert (await seam.acs.entrances.get(acs_entrance_id=GYM)).display_name == "Gym"
    assert (await seam.spaces.get(space_key="whole-property")).device_count == 3
    assert len(await seam.spaces.list()) == 2  # Whole Property and the grant's own space
    identity = await seam.user_identities.get(user_identity_key="guest-res-1")
    assert identity.email_address == "res-1@example.com"
    assert len(await seam.user_identities.list()) == 1
    await seam.user_identities.update(
        user_identity_id=identity.user_identity_id, full_name="Former guest"
    )
    assert (await seam.user_identities.get(user_identity_key="guest-res-1")).full_name == (
        "Former guest"
    )
    more = await seam.access_grants.request_access_methods(
        access_grant_id=grant.access_grant_id, requested_access_methods=[{"mode": "code"}]
    )
    assert len(more.access_method_ids) == 2
    await seam.access_methods.delete(access_method_id=method_id)
    await seam.access_grants.delete(access_grant_id=grant.access_grant_id)
    assert (await seam.workspaces.get()).is_sandbox is True
    webhook = await seam.webhooks.create(url="https://example.com/hook", event_types=["*"])
    assert webhook.secret.startswith("whsec_")
    await seam.webhooks.update(webhook_id=webhook.webhook_id, event_types=["device.connected"])
    assert (await seam.webhooks.get(webhook_id=webhook.webhook_id)).event_types == [
        "device.connected"
    ]
    assert [w.webhook_id for w in await seam.webhooks.list()] == [webhook.webhook_id]
    await seam.webhooks.delete(webhook_id=webhook.webhook_id)

    assert response_log.validated_paths == set(json.loads(SCHEMAS_FILE.read_text())["responses"])


async def test_every_endpoint_takes_post_with_a_json_body(
    raw: httpx.AsyncClient, fake: FakeSeam
) -> None:
    created = await raw.post(
        "/access_grants/create",
        json={
            "user_identity": {"full_name": "Bo Guest", "phone_number": "+15555550100"},
            "space_keys": ["whole-property"],
            "requested_access_methods": [{"mode": "code", "code": "2468"}],
            **stay(),
        },
    )
    grant = created.json()["access_grant"]
    grant_id, method_id = grant["access_grant_id"], grant["access_method_ids"][0]
    await raw.post("/_fake/issue", json={"access_grant_id": grant_id})

    calls = {
        "/access_grants/get": {"access_grant_id": grant_id},
        "/access_grants/list": {"limit": 10},
        "/access_grants/update": {"access_grant_id": grant_id, "name": "New name"},
        "/access_methods/get": {"access_method_id": method_id},
        "/access_methods/list": {"access_grant_id": grant_id},
        "/access_methods/get_related": {"access_method_ids": [method_id]},
        "/events/list": {"since": "2020-01-01T00:00:00Z", "access_grant_id": grant_id},
        "/devices/list": {"device_ids": [GARAGE]},
        "/acs/entrances/list": {"acs_entrance_ids": [GYM]},
        "/user_identities/get": {"user_identity_id": grant["user_identity_id"]},
        "/user_identities/list": {"search": "+1555"},
        "/access_methods/delete": {"access_method_id": method_id},
        "/access_grants/delete": {"access_grant_id": grant_id},
    }
    for path, body in calls.items():
        response = await raw.post(path, json=body)
        assert response.status_code == 200, (path, response.text)

    state = await fake_state(raw)
    assert state["access_grants"] == [] and state["access_methods"] == []
    assert [c["method"] for c in state["calls"]] == ["POST"] * 14


async def test_access_method_shows_the_requested_code_and_related_doors_of_the_space(
    raw: httpx.AsyncClient,
) -> None:
    created = await raw.post(
        "/access_grants/create",
        json={
            "user_identity": {"full_name": "Cy Guest"},
            "space_ids": [SEEDED_SPACES[0].id],
            "requested_access_methods": [{"mode": "code", "code": "97531"}],
            **stay(),
        },
    )
    method_id = created.json()["access_grant"]["access_method_ids"][0]
    await raw.post("/_fake/issue", json={"access_method_id": method_id})
    method = (await raw.get("/access_methods/get", params={"access_method_id": method_id})).json()
    assert method["access_method"]["code"] == "97531"
    related = await raw.get(
        "/access_methods/get_related",
        params={"access_method_ids": [method_id], "include": ["devices", "acs_entrances"]},
    )
    batch = related.json()["batch"]
    assert set(batch) == {"devices", "acs_entrances"}
    assert len(batch["devices"]) == 3 and len(batch["acs_entrances"]) == 2


async def test_query_strings_repeat_keys_for_arrays_and_ignore_strict(
    seam: AsyncSeam, raw: httpx.AsyncClient, fake: FakeSeam
) -> None:
    first = await create_grant(seam, "res-a", requested_access_methods=[{"mode": "code"}] * 2)
    await fake.drain()
    response = await raw.get(
        "/access_methods/get_related?"
        + "&".join(f"access_method_ids={m}" for m in first.access_method_ids)
        + "&_strict=true"
    )
    assert len(response.json()["batch"]["access_methods"]) == 2
    events = await raw.get(
        "/events/list?since=2020-01-01T00%3A00%3A00.000Z"
        "&event_types=access_grant.created&event_types=access_method.issued&_strict=true"
    )
    assert sorted(e["event_type"] for e in events.json()["events"]) == [
        "access_grant.created",
        "access_method.issued",
        "access_method.issued",
    ]


async def test_seeded_doors_have_fixed_ids_and_validate_as_devices_and_entrances(
    seam: AsyncSeam,
) -> None:
    assert [(d.name, d.id) for d in SEEDED_DEVICES[:3]] == [
        ("Front Door", "52246fe3-a87c-527d-a1f0-11ea7711d1b1"),
        ("Back Door", "102f4bbf-8eb7-5267-9934-b01ac0abe323"),
        ("Garage", "e8b74104-9f41-540d-8f08-6b47a8f8d93d"),
    ]
    assert [(e["name"], e["id"]) for e in SEEDED_ENTRANCES[:2]] == [
        ("Lobby", "56f5db32-744d-59b5-ae6a-f1fa3c75df1e"),
        ("Gym", "1d0fffa3-4a71-5be0-b052-dba0e065cdc9"),
    ]
    assert (
        seeded_id("device", "Shed"),
        seeded_id("device", "Side Gate"),
        seeded_id("acs_entrance", "Bike Room"),
    ) == (SHED, SIDE_GATE, BIKE_ROOM)
    devices = await seam.devices.list()
    assert [d.device_id for d in devices] == [FRONT_DOOR, BACK_DOOR, GARAGE, SHED, SIDE_GATE]
    assert [d.can_program_online_access_codes for d in devices] == [True] * 3 + [False, True]
    assert [d.properties.online for d in devices] == [True] * 4 + [False]
    entrances = await seam.acs.entrances.list()
    assert [e.display_name for e in entrances] == ["Lobby", "Gym", "Bike Room"]
    assert [e.can_unlock_with_code for e in entrances] == [True, True, False]


async def test_schema_and_extract_files_are_what_the_trim_script_makes_from_the_spec() -> None:
    if not SPEC.exists():
        pytest.skip("Seam's OpenAPI spec is not checked out beside the repository")
    script = importlib.util.spec_from_file_location(
        "trim", REPO_ROOT / "scripts/trim_seam_schemas.py"
    )
    assert script is not None and script.loader is not None
    module = importlib.util.module_from_spec(script)
    script.loader.exec_module(module)
    spec = json.loads(SPEC.read_text())
    assert module.trim(spec) == json.loads(SCHEMAS_FILE.read_text())
    assert module.extract(spec) == json.loads(EXTRACT_FILE.read_text())


# --- access grants ---------------------------------------------------------------------------


async def test_create_answers_ids_without_any_code(raw: httpx.AsyncClient) -> None:
    response = await raw.post(
        "/access_grants/create",
        json={
            "user_identity": {"full_name": "Di Guest"},
            "device_ids": [FRONT_DOOR],
            "requested_access_methods": [{"mode": "code", "code": "1357"}],
            **stay(),
        },
    )
    grant = response.json()["access_grant"]
    assert "1357" not in response.text
    assert (
        grant["requested_access_methods"][0]["created_access_method_ids"]
        == (grant["access_method_ids"])
    )
    assert grant["errors"] == [] and grant["warnings"] == []


async def test_requested_code_already_on_the_lock_is_replaced_with_a_warning(
    seam: AsyncSeam,
) -> None:
    await create_grant(seam, "res-a", requested_access_methods=[{"mode": "code", "code": "1111"}])
    second = await create_grant(
        seam, "res-b", requested_access_methods=[{"mode": "code", "code": "1111"}]
    )
    warning = second.warnings[0]
    assert warning["warning_code"] == "requested_code_unavailable"
    method = await seam.access_methods.get(access_method_id=second.access_method_ids[0])
    assert method.code == warning["new_code"] != "1111"


async def test_duplicate_access_grant_key_is_refused_and_makes_no_second_grant(
    seam: AsyncSeam, fake: FakeSeam
) -> None:
    await create_grant(seam, "res-1")
    with pytest.raises(SeamHttpApiError) as refused:
        await create_grant(
            seam, "res-1", user_identity={"full_name": "Someone Else"}, device_ids=[GARAGE]
        )
    assert refused.value.code == "access_grant_key_already_exists"
    assert refused.value.status_code == 400
    assert len(fake.state.grants) == 1 and len(fake.state.user_identities) == 1


async def test_taken_email_phone_or_identity_key_is_refused_but_the_identity_can_be_reused(
    seam: AsyncSeam, fake: FakeSeam
) -> None:
    first = await create_grant(
        seam,
        "res-1",
        user_identity={
            "full_name": "Ed Guest",
            "email_address": "ed@example.com",
            "phone_number": "+15555550101",
            "user_identity_key": "guest-ed",
        },
    )
    taken = {
        "user_identity_email_address_taken": {"email_address": "ED@example.com"},
        "user_identity_phone_number_taken": {"phone_number": "+15555550101"},
        "user_identity_key_taken": {"user_identity_key": "guest-ed"},
    }
    for error_type, identity in taken.items():
        with pytest.raises(SeamHttpApiError) as refused:
            await create_grant(seam, f"res-{error_type}", user_identity=identity)
        assert (refused.value.status_code, refused.value.code) == (400, error_type)

    again = await create_grant(
        seam, "res-2", user_identity=None, user_identity_id=first.user_identity_id
    )
    assert again.user_identity_id == first.user_identity_id
    assert len(fake.state.user_identities) == 1 and len(fake.state.grants) == 2


async def test_unknown_door_is_404_and_makes_no_grant(seam: AsyncSeam, fake: FakeSeam) -> None:
    cases = {
        "device_not_found": {"device_ids": [UNKNOWN_ID]},
        "acs_entrance_not_found": {"device_ids": [], "acs_entrance_ids": [UNKNOWN_ID]},
        "space_not_found": {"device_ids": [], "acs_entrance_ids": [], "space_ids": [UNKNOWN_ID]},
        "user_identity_not_found": {"user_identity": None, "user_identity_id": UNKNOWN_ID},
    }
    for error_type, overrides in cases.items():
        with pytest.raises(SeamHttpApiError) as missing:
            await create_grant(seam, **overrides)
        assert (missing.value.status_code, missing.value.code) == (404, error_type)
    assert fake.state.grants == {} and fake.state.user_identities == {}
    assert fake.state.events == []


async def test_unknown_grant_method_or_identity_is_404_with_its_type(seam: AsyncSeam) -> None:
    lookups = {
        "access_grant_not_found": seam.access_grants.get(access_grant_id=UNKNOWN_ID),
        "access_method_not_found": seam.access_methods.get(access_method_id=UNKNOWN_ID),
        "user_identity_not_found": seam.user_identities.get(user_identity_key="nobody"),
    }
    for error_type, lookup in lookups.items():
        with pytest.raises(SeamHttpApiError) as missing:
            await lookup
        assert (missing.value.status_code, missing.value.code) == (404, error_type)


async def test_bad_times_or_missing_fields_are_invalid_input(seam: AsyncSeam) -> None:
    now = datetime.now(UTC)
    bad = [
        {"starts_at": (now + timedelta(days=2)).isoformat(), "ends_at": now.isoformat()},
        {
            "starts_at": (now - timedelta(days=3)).isoformat(),
            "ends_at": (now - timedelta(days=1)).isoformat(),
        },
        {"requested_access_methods": []},
        {"requested_access_methods": [{"mode": "code", "code": "12"}]},
        {"user_identity": {"phone_number": "555-0100"}},
        {"device_ids": ["not-a-uuid"]},
        {"device_ids": [], "acs_entrance_ids": []},
    ]
    for overrides in bad:
        with pytest.raises(SeamHttpInvalidInputError) as invalid:
            await create_grant(seam, **overrides)
        assert (invalid.value.status_code, invalid.value.code) == (400, "invalid_input")
    with pytest.raises(SeamHttpInvalidInputError) as invalid:
        await create_grant(seam, **bad[0])
    assert invalid.value.get_validation_error_messages("ends_at") == [
        "ends_at must be after starts_at"
    ]


async def test_update_moves_the_access_window_and_announces_it(
    seam: AsyncSeam, fake: FakeSeam
) -> None:
    grant = await create_grant(seam)
    new_window = stay(days_from_now=5, nights=3)
    await seam.access_grants.update(access_grant_key="res-1", **new_window)
    await seam.access_grants.update(access_grant_id=grant.access_grant_id, name="Only the name")

    updated = await seam.access_grants.get(access_grant_id=grant.access_grant_id)
    assert updated.ends_at[:19] == new_window["ends_at"][:19]
    assert updated.name == "Only the name"
    changed = [
        e for e in fake.state.events if e["event_type"] == "access_grant.access_times_changed"
    ]
    assert len(changed) == 1
    assert changed[0]["access_grant_key"] == "res-1" and changed[0]["ends_at"] == updated.ends_at
    with pytest.raises(SeamHttpInvalidInputError):
        await seam.access_grants.update(
            access_grant_id=grant.access_grant_id,
            ends_at=(datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        )


async def test_delete_removes_grant_and_methods_but_keeps_the_user_identity(
    seam: AsyncSeam, fake: FakeSeam
) -> None:
    grant = await create_grant(seam, requested_access_methods=[{"mode": "code"}] * 2)
    await seam.access_grants.delete(access_grant_id=grant.access_grant_id)

    with pytest.raises(SeamHttpApiError) as gone:
        await seam.access_methods.get(access_method_id=grant.access_method_ids[0])
    assert gone.value.code == "access_method_not_found"
    assert await seam.access_grants.list() == []
    assert (await seam.user_identities.get(user_identity_id=grant.user_identity_id)).full_name
    deleted = [e["event_type"] for e in fake.state.events if e["event_type"].endswith(".deleted")]
    assert deleted == ["access_grant.deleted", "access_method.deleted", "access_method.deleted"]


async def test_lists_page_with_limit_and_cursor(seam: AsyncSeam, raw: httpx.AsyncClient) -> None:
    for key in ("res-a", "res-b", "res-c"):
        await create_grant(seam, key)
    first = (await raw.get("/access_grants/list", params={"limit": 2})).json()
    assert [g["access_grant_key"] for g in first["access_grants"]] == ["res-a", "res-b"]
    assert first["pagination"]["has_next_page"] is True
    assert "page_cursor=" in first["pagination"]["next_page_url"]
    cursor = first["pagination"]["next_page_cursor"]
    second = (
        await raw.post("/access_grants/list", json={"limit": 2, "page_cursor": cursor})
    ).json()
    assert [g["access_grant_key"] for g in second["access_grants"]] == ["res-c"]
    assert second["pagination"] == {
        "has_next_page": False,
        "next_page_cursor": None,
        "next_page_url": None,
    }


# --- issuing and events ----------------------------------------------------------------------


async def test_access_method_is_not_issued_until_the_fake_issues_it(
    seam: AsyncSeam, raw: httpx.AsyncClient, fake: FakeSeam
) -> None:
    await raw.post("/_fake/auto_issue", json={"enabled": False})
    grant = await create_grant(seam)
    await asyncio.sleep(0.03)
    method = await seam.access_methods.get(access_method_id=grant.access_method_ids[0])
    assert (method.is_issued, method.issued_at) == (False, None)

    issued = await raw.post("/_fake/issue", json={"access_method_id": method.access_method_id})
    assert issued.json()["issued_access_method_ids"] == [method.access_method_id]
    method = await seam.access_methods.get(access_method_id=method.access_method_id)
    assert method.is_issued and method.issued_at
    event = fake.state.events[-3]
    assert event["event_type"] == "access_method.issued"
    assert event["code"] == method.code and event["is_backup_code"] is False
    assert event["access_grant_ids"] == [grant.access_grant_id]
    assert event["access_grant_keys"] == ["res-1"]
    assert [e["event_type"] for e in fake.state.events[-2:]] == [
        "access_grant.access_granted_to_door",
        "access_grant.access_granted_to_all_doors",
    ]


async def test_auto_issue_issues_every_method_after_the_delay(
    seam: AsyncSeam, fake: FakeSeam
) -> None:
    grant = await create_grant(seam, requested_access_methods=[{"mode": "code"}] * 2)
    assert await fake.drain()
    methods = await seam.access_methods.list(access_grant_id=grant.access_grant_id)
    assert all(m.is_issued for m in methods)
    assert len({m.code for m in methods}) == 2


async def test_reissue_gives_a_new_code_and_flags_a_backup_code(
    seam: AsyncSeam, raw: httpx.AsyncClient, fake: FakeSeam
) -> None:
    grant = await create_grant(seam)
    await fake.drain()
    method_id = grant.access_method_ids[0]
    response = await raw.post(
        "/_fake/reissue",
        json={"access_method_id": method_id, "code": "8642", "is_backup_code": True},
    )
    assert response.json()["access_method"]["code"] == "8642"
    method = await seam.access_methods.get(access_method_id=method_id)
    assert method.code == "8642"
    assert method.warnings[0]["warning_code"] == "pulled_backup_access_code"
    event = fake.state.events[-1]
    assert event["event_type"] == "access_method.reissued"
    assert (event["code"], event["is_backup_code"]) == ("8642", True)


async def test_events_list_filters_and_answers_oldest_first(
    seam: AsyncSeam, fake: FakeSeam
) -> None:
    first = await create_grant(seam, "res-a")
    second = await create_grant(seam, "res-b")
    await fake.drain()
    events = await seam.events.list(since="2020-01-01T00:00:00Z")
    times = [e.created_at for e in events]
    assert times == sorted(times) and events[0].event_type == "access_grant.created"

    of_second = await seam.events.list(
        since="2020-01-01T00:00:00Z", access_grant_id=second.access_grant_id
    )
    grant_ids = {getattr(e, "access_grant_id", None) or e.access_grant_ids[0] for e in of_second}  # type: ignore[union-attr]
    assert grant_ids == {second.access_grant_id}
    issued = await seam.events.list(
        since="2020-01-01T00:00:00Z",
        event_types=["access_method.issued"],
        access_method_ids=first.access_method_ids,
    )
    assert [getattr(e, "access_method_id", None) for e in issued] == first.access_method_ids
    assert len(await seam.events.list(since="2020-01-01T00:00:00Z", limit=2)) == 2
    assert await seam.events.list(since=datetime.now(UTC).isoformat()) == []
    window = [datetime(2020, 1, 1, tzinfo=UTC).isoformat(), datetime.now(UTC).isoformat()]
    assert len(await seam.events.list(between=window)) == len(events)
    with pytest.raises(SeamHttpInvalidInputError):  # neither since nor between
        await seam.events.list(event_type="access_grant.created")


async def test_emit_records_any_event_for_events_list(
    raw: httpx.AsyncClient, seam: AsyncSeam
) -> None:
    response = await raw.post(
        "/_fake/emit",
        json={
            "event_type": "access_method.failed_to_issue",
            "access_method_id": UNKNOWN_ID,
            "access_grant_ids": [UNKNOWN_ID],
        },
    )
    event = response.json()["event"]
    assert_valid("event", event)
    listed = await seam.events.list(
        since="2020-01-01T00:00:00Z", event_type="access_method.failed_to_issue"
    )
    assert [e.event_id for e in listed] == [event["event_id"]]


# --- authentication and injected failures ----------------------------------------------------


async def test_missing_or_foreign_api_key_is_401_with_error_envelope(
    fake: FakeSeam, response_log: ResponseLog
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(fake.app),
        base_url="http://fake-seam",
        event_hooks={"response": [response_log.check]},
    ) as anonymous:
        missing = await anonymous.post("/devices/list", json={})
        foreign = await anonymous.get("/devices/list", headers={"Authorization": "Bearer sk_x"})
    for response in (missing, foreign):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "unauthorized"
        assert response.json()["ok"] is False


async def test_fail_answers_the_next_calls_with_the_error_and_retry_after(
    seam: AsyncSeam, raw: httpx.AsyncClient, fake: FakeSeam
) -> None:
    await raw.post(
        "/_fake/fail",
        json={"count": 2, "status": 429, "retry_after": 3, "endpoint": "/devices/list"},
    )
    for _ in range(2):
        response = await raw.post("/devices/list", json={})
        assert response.status_code == 429 and response.headers["retry-after"] == "3"
        assert response.json()["error"]["type"] == "rate_limit_exceeded"
    assert (await raw.post("/devices/list", json={})).status_code == 200

    await raw.post("/_fake/fail", json={"status": 503, "error_type": "seam_is_down"})
    with pytest.raises(SeamHttpApiError) as down:
        await create_grant(seam)
    assert (down.value.status_code, down.value.code) == (503, "seam_is_down")
    assert fake.state.grants == {}


async def test_fail_after_success_loses_the_response_but_keeps_the_grant(
    seam: AsyncSeam, raw: httpx.AsyncClient
) -> None:
    await raw.post(
        "/_fake/fail",
        json={"status": 502, "endpoint": "/access_grants/create", "after_success": True},
    )
    with pytest.raises(SeamHttpApiError) as lost:
        await create_grant(seam, "res-1")
    assert lost.value.status_code == 502
    with pytest.raises(SeamHttpApiError) as retried:
        await create_grant(seam, "res-1")
    assert retried.value.code == "access_grant_key_already_exists"

    found = await seam.access_grants.get(access_grant_key="res-1")
    assert found.access_grant_key == "res-1"
    calls = [(c["path"], c["status"]) for c in (await fake_state(raw))["calls"]]
    assert calls == [
        ("/access_grants/create", 502),
        ("/access_grants/create", 400),
        ("/access_grants/get", 200),
    ]


async def test_timeout_seconds_makes_seam_slow_then_answers(raw: httpx.AsyncClient) -> None:
    await raw.post("/_fake/fail", json={"status": 0, "timeout_seconds": 0.2})
    started = time.monotonic()
    response = await raw.post("/devices/list", json={})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


async def test_state_dump_shows_codes_and_calls_and_reset_empties_it(
    seam: AsyncSeam, raw: httpx.AsyncClient, fake: FakeSeam
) -> None:
    grant = await create_grant(seam)
    await fake.drain()
    state = await fake_state(raw)
    assert state["access_methods"][0]["code"]
    assert state["access_methods"][0]["access_grant_id"] == grant.access_grant_id
    assert [c["path"] for c in state["calls"]] == ["/access_grants/create"]
    assert len(state["user_identities"]) == 1 and state["events"]

    await raw.post("/_fake/reset")
    state = await fake_state(raw)
    assert state["access_grants"] == state["events"] == state["calls"] == []
    assert len(await seam.devices.list()) == 5


# --- webhooks --------------------------------------------------------------------------------


async def test_webhooks_are_svix_signed_events_and_include_the_issued_code(
    webhook_fake: FakeSeam, receiver: Receiver
) -> None:
    seam = make_sdk(webhook_fake, ResponseLog())
    grant = await create_grant(seam)
    [issued] = await receiver.wait_for(lambda d: d.event["event_type"] == "access_method.issued")
    assert issued.event["access_method_id"] == grant.access_method_ids[0]
    assert issued.event["code"]
    assert issued.svix_id.startswith("msg_")
    await webhook_fake.drain()
    assert receiver.rejected == []
    for delivery in receiver.deliveries:
        assert_valid("event", json.loads(delivery.body))
    assert [d.event for d in receiver.deliveries] == webhook_fake.state.events
    assert len({d.svix_id for d in receiver.deliveries}) == len(receiver.deliveries)


async def test_failed_webhook_delivery_is_retried_with_the_same_svix_id(
    webhook_fake: FakeSeam, receiver: Receiver
) -> None:
    receiver.fail_next = 1
    async with httpx.AsyncClient(transport=httpx.ASGITransport(webhook_fake.app)) as control:
        await control.post(
            "http://fake-seam/_fake/emit",
            json={"event_type": "access_grant.deleted", "access_grant_id": UNKNOWN_ID},
        )
        attempts = await receiver.wait_for(lambda d: True, count=2)
        log = (await control.get("http://fake-seam/_fake/webhooks")).json()
    assert [d.status for d in attempts] == [500, 204]
    assert attempts[0].svix_id == attempts[1].svix_id and attempts[0].body == attempts[1].body
    [message] = log["messages"]
    assert (message["attempts"], message["last_status"], message["delivered"]) == (2, 204, True)


async def test_resend_replays_a_message_with_the_same_svix_id_and_body(
    webhook_fake: FakeSeam, receiver: Receiver
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(webhook_fake.app), base_url="http://fake-seam"
    ) as control:
        await control.post(
            "/_fake/emit",
            json={"event_type": "access_grant.created", "access_grant_id": UNKNOWN_ID},
        )
        [original] = await receiver.wait_for(lambda d: True)
        resent = await control.post("/_fake/webhooks/resend", json={"svix_id": original.svix_id})
        missing = await control.post("/_fake/webhooks/resend", json={"svix_id": "msg_unknown"})
    assert resent.json()["message"]["attempts"] == 2
    [first, second] = receiver.deliveries
    assert (second.svix_id, second.body) == (first.svix_id, first.body)
    assert missing.status_code == 404


async def test_disabled_webhooks_send_nothing_until_enabled_again(
    webhook_fake: FakeSeam, receiver: Receiver
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(webhook_fake.app), base_url="http://fake-seam"
    ) as control:
        await control.post("/_fake/webhooks", json={"enabled": False})
        await control.post(
            "/_fake/emit",
            json={"event_type": "access_grant.created", "access_grant_id": UNKNOWN_ID},
        )
        await webhook_fake.drain()
        assert receiver.deliveries == []
        await control.post("/_fake/webhooks", json={"enabled": True})
        await control.post(
            "/_fake/emit",
            json={"event_type": "access_grant.deleted", "access_grant_id": UNKNOWN_ID},
        )
        [delivery] = await receiver.wait_for(lambda d: True)
    assert delivery.event["event_type"] == "access_grant.deleted"


async def test_unreachable_webhook_endpoint_is_logged_as_undelivered(
    receiver: Receiver,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    fake = FakeSeam(
        webhook_url="http://nowhere/webhooks",
        webhook_transport=httpx.MockTransport(refuse),
        webhook_retry_schedule=(0.01,),
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(fake.app), base_url="http://fake-seam"
        ) as control:
            await control.post(
                "/_fake/emit",
                json={"event_type": "access_grant.created", "access_grant_id": UNKNOWN_ID},
            )
            assert await fake.drain()
            [message] = (await control.get("/_fake/webhooks")).json()["messages"]
    finally:
        await fake.aclose()
    assert (message["attempts"], message["delivered"]) == (2, False)
    assert "ConnectError" in message["last_error"]
    assert fake.webhook_secret.startswith("whsec_")
