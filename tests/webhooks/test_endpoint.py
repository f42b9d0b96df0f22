"""POST /webhooks/seam: verified deliveries stored once; everything else refused, unstored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.runtime import Runtime
from app.webhooks.models import SeamWebhook
from tests.conftest import job_counts
from tests.factories import seam_calls
from tests.webhooks.signing import OTHER_SECRET, seam_event, shifted, signed


async def inbox(runtime: Runtime) -> list[SeamWebhook]:
    async with runtime.sessionmaker() as session:
        return list(await session.scalars(select(SeamWebhook).order_by(SeamWebhook.received_at)))


async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/webhooks/seam", content=body, headers=headers)


async def test_a_verified_event_is_stored_and_enqueued(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    event = seam_event("access_method.issued", access_method_id="am-1", access_grant_ids=["g-1"])
    body, headers = signed(event)
    response = await post(client, body, headers)
    assert response.status_code == 204
    rows = await inbox(runtime)
    assert [(r.svix_id, r.event_id, r.event_type, r.outcome) for r in rows] == [
        (headers["svix-id"], event["event_id"], "access_method.issued", "received")
    ]
    assert rows[0].payload == event
    assert await job_counts(runtime) == {"todo": 1}
    assert await seam_calls(fake_seam) == []  # no Seam I/O in the request


async def test_five_redeliveries_are_stored_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    body, headers = signed(seam_event("access_method.issued", access_method_id="am-1"))
    for _ in range(5):
        assert (await post(client, body, headers)).status_code == 204
    assert len(await inbox(runtime)) == 1
    assert await job_counts(runtime) == {"todo": 1}


async def test_the_same_event_under_a_new_message_id_is_a_duplicate(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    event = seam_event()
    for _ in range(2):
        body, headers = signed(event)  # a fresh svix-id each time
        assert (await post(client, body, headers)).status_code == 204
    assert len(await inbox(runtime)) == 1


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
async def test_a_missing_header_is_400_and_stores_nothing(
    client: httpx.AsyncClient, runtime: Runtime, missing: str
) -> None:
    body, headers = signed(seam_event())
    del headers[missing]
    response = await post(client, body, headers)
    assert response.status_code == 400
    assert await inbox(runtime) == [] and await job_counts(runtime) == {}


@pytest.mark.parametrize(
    ("case", "expected"),
    [("bad_signature", 401), ("stale", 401), ("future", 401), ("garbled", 400)],
)
async def test_unverifiable_deliveries_are_refused_and_not_stored(
    client: httpx.AsyncClient, runtime: Runtime, case: str, expected: int
) -> None:
    event = seam_event()
    if case == "bad_signature":
        body, headers = signed(event, secret=OTHER_SECRET)
    elif case == "stale":
        body, headers = signed(event, at=shifted(-330))
    elif case == "future":
        body, headers = signed(event, at=shifted(330))
    else:
        body, headers = signed(event)
        headers["svix-signature"] = "%%%"
    response = await post(client, body, headers)
    assert response.status_code == expected
    assert await inbox(runtime) == [] and await job_counts(runtime) == {}


async def test_webhook_header_family_is_accepted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    body, headers = signed(seam_event(), prefix="webhook")
    assert (await post(client, body, headers)).status_code == 204
    assert len(await inbox(runtime)) == 1


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"not json at all", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"hello": 1}', "not_a_seam_event"),
    ],
)
async def test_signed_garbage_is_stored_as_rejected_and_acknowledged(
    client: httpx.AsyncClient, runtime: Runtime, garbage: bytes, reason: str
) -> None:
    body, headers = signed(garbage)
    assert (await post(client, body, headers)).status_code == 204
    rows = await inbox(runtime)
    assert [(r.outcome, r.outcome_reason) for r in rows] == [("rejected", reason)]
    assert await job_counts(runtime) == {}


async def test_a_body_over_one_mebibyte_is_413(client: httpx.AsyncClient, runtime: Runtime) -> None:
    event = seam_event(padding="x" * (1024 * 1024))
    body, headers = signed(event)
    assert (await post(client, body, headers)).status_code == 413
    assert await inbox(runtime) == []


async def test_a_large_but_allowed_body_is_accepted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    body, headers = signed(seam_event(padding="x" * 500_000))
    assert (await post(client, body, headers)).status_code == 204


async def test_unknown_event_types_are_stored_as_ignored_with_no_job(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    body, headers = signed(seam_event("lock.unlocked", device_id="d-1"))
    assert (await post(client, body, headers)).status_code == 204
    assert await job_counts(runtime) == {}
    async with runtime.sessionmaker() as session:
        outcome = await session.scalar(select(SeamWebhook.outcome))
        assert outcome == "ignored"
        assert await session.scalar(select(func.count()).select_from(SeamWebhook)) == 1


def test_the_readme_lists_exactly_the_event_types_guestkey_acts_on() -> None:
    """Operators copy the README's list into Seam's webhook subscription."""
    import re
    from pathlib import Path

    from app.webhooks.events import ACTED_ON_EVENTS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("**Seam's webhook subscription.**", 1)[1].split("\n\n", 1)[0]
    kinds = "access_method|access_grant|device|acs_entrance|space"
    listed = set(re.findall(rf"`((?:{kinds})\.[a-z_.]+)`", section))
    assert listed == ACTED_ON_EVENTS
