"""What real Seam workspaces do that a kind fake would not: codes under new access methods,
methods guestkey has not stored, creates that fail while doors change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from app.runtime import Runtime
from app.seam.fake.schemas import RequestedAccessMethod
from app.seam.fake.state import iso
from tests.conftest import Mailbox, make_retries_due, run_jobs, settle
from tests.factories import (
    BACK_DOOR,
    LOBBY,
    delivered_reservation,
    fail_next,
    fake_state,
    grant_device_ids,
    mentions_code,
    plain_text,
    put_reservation,
    timeline,
)


def current_codes(reservation: dict[str, Any]) -> list[str]:
    return [m["code"] for m in reservation["access_methods"] if m["state"] == "current"]


def new_method_on_grant(fake: Any, access_grant_id: str, *, backup_of: str | None = None) -> Any:
    """A second access method on the grant, issued at once: a backup code Seam pulled (with
    `pulled_backup_access_code`), or one guestkey has never heard of."""
    grant = fake.state.grants[access_grant_id]
    method = fake.state.add_access_method(
        grant, RequestedAccessMethod(mode="code"), datetime.now(UTC)
    )
    if backup_of is not None:
        method.warnings.append(
            {
                "warning_code": "pulled_backup_access_code",
                "message": "A backup access code was pulled to replace the original code.",
                "created_at": iso(datetime.now(UTC)),
                "original_access_method_id": backup_of,
            }
        )
    fake.state.issue(method)
    return method


async def test_a_backup_code_under_a_new_method_supersedes_the_original(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    before = await delivered_reservation(client, runtime)
    original = before["access_methods"][0]
    backup = new_method_on_grant(
        fake_seam, before["access_grant_id"], backup_of=original["access_method_id"]
    )
    await settle(runtime)

    after = (await client.get("/v1/reservations/bk-1")).json()
    methods = {m["access_method_id"]: m for m in after["access_methods"]}
    assert methods[original["access_method_id"]]["state"] == "superseded"
    assert methods[original["access_method_id"]]["code"] is None
    assert methods[backup.access_method_id]["state"] == "current"
    assert methods[backup.access_method_id]["is_backup_code"] is True
    assert current_codes(after) == [backup.code]
    messages = mailbox.to("ada@example.com")
    assert len(messages) == 2
    assert mentions_code(plain_text(messages[1]), backup.code)
    assert not mentions_code(plain_text(messages[1]), original["code"])
    kinds = [event["kind"] for event in await timeline(client)]
    assert "code_superseded" in kinds and "code_changed" in kinds

    # Seam re-announcing the original code sends nothing: it is no longer the guest's.
    fake_seam.state.reissue(
        fake_seam.state.access_methods[original["access_method_id"]], None, False
    )
    await settle(runtime)
    assert len(mailbox.to("ada@example.com")) == 2
    again = (await client.get("/v1/reservations/bk-1")).json()
    assert current_codes(again) == [backup.code]


async def test_an_issued_event_for_a_method_not_yet_stored_is_applied(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    before = await delivered_reservation(client, runtime)
    unknown = new_method_on_grant(fake_seam, before["access_grant_id"])
    await settle(runtime)

    after = (await client.get("/v1/reservations/bk-1")).json()
    assert current_codes(after) == [unknown.code]
    assert len(mailbox.to("ada@example.com")) == 2


async def test_an_access_method_of_another_grant_is_not_applied(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    mine = await delivered_reservation(client, runtime, "bk-1")
    theirs = await delivered_reservation(
        client, runtime, "bk-2", guest={"name": "Grace Hopper", "email": "grace@example.com"}
    )
    stranger = new_method_on_grant(fake_seam, theirs["access_grant_id"])
    fake_seam.state.record_event(
        "access_method.reissued",
        access_method_id=stranger.access_method_id,
        access_grant_ids=[theirs["access_grant_id"]],
        access_grant_keys=[fake_seam.state.grants[mine["access_grant_id"]].access_grant_key],
    )
    await settle(runtime)

    mine_after = (await client.get("/v1/reservations/bk-1")).json()
    assert current_codes(mine_after) == current_codes(mine)
    assert len(mailbox.to("ada@example.com")) == 1
    assert "access_method_not_ours" in [event["kind"] for event in await timeline(client, "bk-1")]


async def test_a_door_change_keeps_the_old_grant_until_the_new_one_exists(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, mailbox: Mailbox
) -> None:
    before = await delivered_reservation(client, runtime)
    await fail_next(fake_seam, count=3, status=503, endpoint="/access_grants/create")
    await put_reservation(client, "bk-1", device_ids=[BACK_DOOR.id], acs_entrance_ids=[LOBBY.id])

    for _ in range(3):
        await run_jobs(runtime)
        await make_retries_due(runtime)
        grants = (await fake_state(fake_seam))["access_grants"]
        # Seam is refusing the new grant: the guest keeps the access they have.
        assert [grant["access_grant_id"] for grant in grants] == [before["access_grant_id"]]
        during = (await client.get("/v1/reservations/bk-1")).json()
        assert during["status"] == "delivered"
        assert current_codes(during) == current_codes(before)

    await settle(runtime)
    grants = (await fake_state(fake_seam))["access_grants"]
    assert len(grants) == 1 and grants[0]["access_grant_id"] != before["access_grant_id"]
    assert grant_device_ids(fake_seam, grants[0]["access_grant_id"]) == [BACK_DOOR.id]
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert after["status"] == "delivered"
    assert after["access_grant_id"] == grants[0]["access_grant_id"]
    assert len(current_codes(after)) == 1 and current_codes(after) != current_codes(before)
    kinds = [event["kind"] for event in await timeline(client)]
    # The new grant first, the old one deleted after.
    assert kinds.index("grant_replaced") > len(kinds) - 1 - kinds[::-1].index("grant_created")
    assert len(mailbox.to("ada@example.com")) == 2
