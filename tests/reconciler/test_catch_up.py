"""The events.list catch-up: every event of the types guestkey acts on, read with an overlap,
never skipped whatever the page size or Seam's order, and a failed pass costs nothing."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from seam.resources.seam_event import seam_event_from_dict
from sqlalchemy import func, select, text

from app.reconciler.flows import EVENTS_CURSOR, EVENTS_OVERLAP, catch_up_events, reconcile
from app.reconciler.models import ReconcilerCursor
from app.runtime import Runtime
from app.seam.client import _as_dict
from app.webhooks.models import SeamWebhook
from tests.conftest import job_counts
from tests.factories import FRONT_DOOR, fail_next, fake_control


@pytest.fixture(autouse=True)
async def webhooks_off(app: Any, fake_seam: Any) -> None:
    """Events reach guestkey only through the catch-up (unless a test turns webhooks on)."""
    async with fake_control(fake_seam) as control:
        response = await control.post("/_fake/webhooks", json={"enabled": False})
        assert response.status_code == 200


async def emit(fake: Any, event_type: str, **fields: Any) -> None:
    async with fake_control(fake) as control:
        response = await control.post("/_fake/emit", json={"event_type": event_type, **fields})
        assert response.status_code == 200, response.text


async def inbox(runtime: Runtime) -> list[SeamWebhook]:
    async with runtime.sessionmaker() as session:
        return list(await session.scalars(select(SeamWebhook)))


async def cursor(runtime: Runtime) -> datetime | None:
    async with runtime.sessionmaker() as session:
        return await session.scalar(
            select(ReconcilerCursor.position).where(ReconcilerCursor.name == EVENTS_CURSOR)
        )


def test_events_with_nested_sdk_objects_become_plain_json() -> None:
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "access_code.changed",
        "access_code_id": str(uuid.uuid4()),
        "device_id": FRONT_DOOR.id,
        "connected_account_id": str(uuid.uuid4()),
        "workspace_id": str(uuid.uuid4()),
        "created_at": "2026-12-01T10:00:00.000Z",
        "occurred_at": "2026-12-01T10:00:00.000Z",
        "changed_properties": [
            {"property": "name", "from": "Guest A", "to": "Guest B"},
            {"property": "ends_at", "from": "2026-12-02T11:00:00Z", "to": "2026-12-03T11:00:00Z"},
        ],
    }
    parsed = seam_event_from_dict(event)  # what the SDK's events.list hands back
    plain = _as_dict(parsed)
    assert json.loads(json.dumps(plain)) == plain  # serialisable all the way down
    assert plain["changed_properties"] == event["changed_properties"]  # Seam's own names
    assert plain["event_id"] == event["event_id"] and plain["device_id"] == FRONT_DOOR.id


async def test_events_list_answers_plain_json_over_real_http(
    runtime: Runtime, fake_seam: Any
) -> None:
    changed = [{"property": "name", "from": "Guest A", "to": "Guest B"}]
    await emit(
        fake_seam,
        "access_code.changed",
        access_code_id=str(uuid.uuid4()),
        device_id=FRONT_DOOR.id,
        connected_account_id=str(uuid.uuid4()),
        changed_properties=changed,
    )
    now = datetime.now(UTC)
    [event] = await runtime.seam.list_events(
        after=now - timedelta(minutes=1),
        before=now + timedelta(minutes=1),
        event_types={"access_code.changed"},
    )
    assert json.loads(json.dumps(event)) == event
    assert event["changed_properties"] == changed


async def test_a_device_event_with_nested_fields_is_stored_through_the_catch_up(
    runtime: Runtime, fake_seam: Any
) -> None:
    await emit(
        fake_seam,
        "device.disconnected",
        device_id=FRONT_DOOR.id,
        connected_account_id=str(uuid.uuid4()),
        error_code="account_disconnected",
        device_custom_metadata={"floor": "2", "staff_only": True},
    )
    assert await catch_up_events(runtime) == 1
    [row] = await inbox(runtime)
    assert row.event_type == "device.disconnected"
    assert row.outcome == "processed"  # by the door list's refresh, enqueued with it
    assert await job_counts(runtime) == {"todo": 1}
    assert row.payload["device_id"] == FRONT_DOOR.id
    assert row.payload["device_custom_metadata"] == {"floor": "2", "staff_only": True}


async def test_more_events_than_a_page_are_all_read_and_the_cursor_is_the_newest(
    runtime: Runtime, fake_seam: Any
) -> None:
    for _ in range(23):
        await emit(fake_seam, "access_grant.deleted", access_grant_id=str(uuid.uuid4()))
    # A type guestkey does not act on is not asked for (event_types), so not stored.
    await emit(fake_seam, "lock.unlocked", device_id=FRONT_DOOR.id, method="keycode")
    assert await catch_up_events(runtime, page_size=5) == 23
    rows = await inbox(runtime)
    assert {row.event_type for row in rows} == {"access_grant.deleted"}
    newest = max(datetime.fromisoformat(e["created_at"]) for e in fake_seam.state.events)
    assert await cursor(runtime) <= newest
    assert await cursor(runtime) == max(
        datetime.fromisoformat(row.payload["created_at"]) for row in rows
    )
    assert await catch_up_events(runtime, page_size=5) == 0  # re-read (the overlap), not stored


class ShuffledSeam:
    """events.list as a Seam that answers in no particular order (the spec documents none): a
    full answer is any `limit` of the window's events. The order is the same for the same
    question (a database's), so an offset pages through it."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.calls: list[tuple[datetime, datetime, int | None]] = []

    async def list_events(
        self,
        *,
        after: datetime,
        before: datetime,
        event_types: Collection[str],
        limit: int = 500,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        self.calls.append((after, before, offset))
        matching = [
            event
            for event in self.events
            if after < datetime.fromisoformat(event["created_at"]) < before
            and event["event_type"] in event_types
        ]
        random.Random(f"{after}{before}").shuffle(matching)
        return matching[(offset or 0) : (offset or 0) + limit]


def grant_deleted_at(moment: datetime) -> dict[str, Any]:
    stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "access_grant.deleted",
        "access_grant_id": str(uuid.uuid4()),
        "workspace_id": str(uuid.uuid4()),
        "created_at": stamp,
        "occurred_at": stamp,
    }


async def test_out_of_order_full_pages_skip_nothing(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    moments = [now - timedelta(minutes=50) + timedelta(seconds=7 * n) for n in range(300)]
    moments += [now - timedelta(minutes=5)] * 12  # a burst stamped in the same millisecond
    events = [grant_deleted_at(moment) for moment in moments]
    seam = ShuffledSeam(events)
    monkeypatch.setattr(runtime, "seam", seam)

    # A pass makes a bounded number of calls; the next pass goes on where it stopped.
    stored = [await catch_up_events(runtime, page_size=10) for _ in range(8)]
    assert sum(stored) == len(events) and stored[0] > 0 and stored[-1] == 0, stored
    assert {row.event_id for row in await inbox(runtime)} == {e["event_id"] for e in events}
    stored_cursor = await cursor(runtime)
    assert stored_cursor is not None
    assert stored_cursor.isoformat(timespec="milliseconds") == max(moments).isoformat(
        timespec="milliseconds"
    )
    # Every question asked only for the types guestkey acts on and began before the cursor.
    seam.calls.clear()
    assert await catch_up_events(runtime, page_size=10) == 0
    assert seam.calls[0][0] <= stored_cursor - EVENTS_OVERLAP + timedelta(milliseconds=1)


async def test_a_failing_catch_up_does_not_stop_the_pass_and_the_next_pass_catches_up(
    runtime: Runtime, fake_seam: Any
) -> None:
    await emit(fake_seam, "access_grant.deleted", access_grant_id=str(uuid.uuid4()))
    async with runtime.engine.begin() as connection:  # a job of a worker that died
        worker_id = await connection.scalar(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now() - interval '10 minutes') RETURNING id"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, worker_id) "
                "VALUES ('default', 'reservations.sync', '{}', 'doing', :worker)"
            ),
            {"worker": worker_id},
        )
    # Seam is down for events.list (three answers: the SDK retries a read twice).
    await fail_next(fake_seam, count=3, status=503, endpoint="/events/list")
    first = await reconcile(runtime)
    assert first["events"] == 0 and first["stalled_jobs"] == 1  # the rest of the pass ran
    assert await inbox(runtime) == [] and await cursor(runtime) is None

    second = await reconcile(runtime)
    assert second["events"] == 1
    async with runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(SeamWebhook)) == 1


async def test_a_webhook_and_its_polled_twin_are_one_event(
    runtime: Runtime, fake_seam: Any, client: httpx.AsyncClient
) -> None:
    async with fake_control(fake_seam) as control:
        await control.post("/_fake/webhooks", json={"enabled": True})
    await emit(fake_seam, "access_grant.deleted", access_grant_id=str(uuid.uuid4()))
    await fake_seam.drain()
    assert len(await inbox(runtime)) == 1
    assert await catch_up_events(runtime) == 0
    assert len(await inbox(runtime)) == 1
