"""What the console's views show, read from the tables the rest of guestkey writes.

Every query here is the console's own: nothing is added to the API's or the webhook intake's
paths (no index, no trigger, no counter) for the console's sake. A client's operator
(`client_id` set) only ever reads that client's reservations.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import Select, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.clients.models import ApiClient
from app.db import utcnow
from app.delivery.models import Delivery
from app.doors.models import Door
from app.errors import NotFound
from app.metrics import WEBHOOKS
from app.reconciler.models import ReconcilerCursor
from app.reservations import service as reservations
from app.reservations.models import (
    AccessMethod,
    DoorState,
    Reservation,
    ReservationDoor,
    ReservationEvent,
    ReservationStatus,
)
from app.timeline import TimelineKind
from app.timeline import timeline as read_timeline
from app.webhooks.models import SeamWebhook

ARRIVALS_AHEAD = timedelta(hours=48)
PENDING_TOO_LONG = timedelta(minutes=10)
CODE_DUE_BEFORE_CHECK_IN = timedelta(hours=24)
PAGE_SIZE = 25
# Door states that leave the guest without a door they booked.
DOOR_TROUBLE = (DoorState.LOST.value, DoorState.UNSUPPORTED.value, DoorState.FAILED.value)
DELIVERY_TROUBLE = ("failed", "retrying")


@dataclass
class Stay:
    """A reservation as a list shows it: with its client's name and what is wrong."""

    reservation: Reservation
    client_name: str
    problems: list[str] = field(default_factory=list)

    @property
    def code_delivered(self) -> bool:
        return self.reservation.status == ReservationStatus.DELIVERED


Columns = TypeVarTuple("Columns")


def _scoped(query: Select[*Columns], client_id: uuid.UUID | None) -> Select[*Columns]:
    return query if client_id is None else query.where(Reservation.client_id == client_id)


def _stays_query(client_id: uuid.UUID | None) -> Select[Reservation, str]:
    query = select(Reservation, ApiClient.name).join(
        ApiClient, ApiClient.id == Reservation.client_id
    )
    return _scoped(query, client_id)


# Today ----------------------------------------------------------------------------------------


@dataclass
class Today:
    now: datetime
    arrivals: list[Stay]
    stuck: list[Stay]
    counts: dict[str, int]


async def today(session: AsyncSession, *, client_id: uuid.UUID | None) -> Today:
    now = utcnow()
    arrivals = [
        Stay(reservation, name)
        for reservation, name in await session.execute(
            _stays_query(client_id)
            .where(
                Reservation.starts_at >= now,
                Reservation.starts_at < now + ARRIVALS_AHEAD,
                Reservation.status != ReservationStatus.CANCELLED.value,
            )
            .order_by(Reservation.starts_at, Reservation.id)
            .limit(200)
        )
    ]
    problems = await _problems(session, client_id=client_id, now=now)
    for stay in arrivals:
        warnings = [
            f"warning: {warning.get('message') or warning.get('code')}"
            for warning in stay.reservation.warnings or []
        ]
        stay.problems = problems.get(stay.reservation.id, []) + warnings
    stuck_ids = list(problems)
    stuck = [
        Stay(reservation, name, problems[reservation.id])
        for reservation, name in await session.execute(
            _stays_query(client_id)
            .where(Reservation.id.in_(stuck_ids))
            .order_by(Reservation.starts_at, Reservation.id)
        )
    ]
    counts = dict(
        (status, count)
        for status, count in await session.execute(
            _scoped(
                select(Reservation.status, func.count()).group_by(Reservation.status), client_id
            )
        )
    )
    return Today(now=now, arrivals=arrivals, stuck=stuck, counts=counts)


async def _problems(
    session: AsyncSession, *, client_id: uuid.UUID | None, now: datetime
) -> dict[uuid.UUID, list[str]]:
    """Why each stay that needs a look needs it: stuck work of stays not yet over."""
    found: dict[uuid.UUID, list[str]] = defaultdict(list)
    live = (Reservation.ends_at > now, Reservation.status != ReservationStatus.CANCELLED.value)
    stuck_statuses = await session.execute(
        _scoped(
            select(
                Reservation.id,
                Reservation.status,
                Reservation.updated_at,
                Reservation.last_error,
            ).where(
                *live,
                or_(
                    (Reservation.status == ReservationStatus.PENDING.value)
                    & (Reservation.updated_at < now - PENDING_TOO_LONG),
                    (Reservation.status == ReservationStatus.GRANTED.value)
                    & (Reservation.starts_at < now + CODE_DUE_BEFORE_CHECK_IN),
                    Reservation.status == ReservationStatus.FAILED.value,
                ),
            ),
            client_id,
        ).limit(200)
    )
    for reservation_id, status, updated_at, last_error in stuck_statuses:
        if status == ReservationStatus.PENDING:
            minutes = int((now - updated_at).total_seconds() // 60)
            found[reservation_id].append(f"pending for {minutes} min")
        elif status == ReservationStatus.GRANTED:
            found[reservation_id].append("no code yet, less than 24 h before check-in")
        else:
            found[reservation_id].append("failed")
        if last_error:
            found[reservation_id].append(last_error)
    failing = await session.execute(
        _scoped(
            select(Delivery.reservation_id, Delivery.channel, Delivery.status, Delivery.error)
            .join(Reservation, Reservation.id == Delivery.reservation_id)
            .where(*live, Delivery.status.in_(DELIVERY_TROUBLE)),
            client_id,
        ).limit(200)
    )
    for reservation_id, channel, status, error in failing:
        found[reservation_id].append(f"{channel} delivery {status}: {error or 'no reason given'}")
    door = (
        ReservationDoor.reservation_id,
        ReservationDoor.name,
        ReservationDoor.door_id,
        ReservationDoor.state,
        ReservationDoor.reason,
    )
    troubled_doors = await session.execute(
        _scoped(
            select(*door)
            .join(Reservation, Reservation.id == ReservationDoor.reservation_id)
            .where(*live, ReservationDoor.state.in_(DOOR_TROUBLE)),
            client_id,
        ).limit(200)
    )
    for reservation_id, name, door_id, state, reason in troubled_doors:
        found[reservation_id].append(
            f"door {name or door_id}: {state}" + (f" ({reason})" if reason else "")
        )
    # Offline as Seam last said (the door list guestkey keeps): a code may not reach the lock.
    offline_doors = await session.execute(
        _scoped(
            select(*door)
            .join(Reservation, Reservation.id == ReservationDoor.reservation_id)
            .join(
                Door,
                (Door.door_type == ReservationDoor.door_type)
                & (Door.door_id == ReservationDoor.door_id),
            )
            .where(*live, Door.online.is_(False)),
            client_id,
        ).limit(200)
    )
    for reservation_id, name, door_id, _state, _reason in offline_doors:
        found[reservation_id].append(f"door {name or door_id}: offline")
    return dict(found)


# Reservations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    text: str = ""
    status: str = ""
    client: str = ""
    property_name: str = ""
    arrives_from: date | None = None
    arrives_until: date | None = None
    page: int = 1


@dataclass
class SearchPage:
    stays: list[Stay]
    page: int
    has_next: bool


def _contains(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search(
    session: AsyncSession, *, client_id: uuid.UUID | None, criteria: Search
) -> SearchPage:
    """Newest arrivals first; matches the key, the guest's name, email or phone."""
    query = _stays_query(client_id)
    if criteria.text:
        pattern = _contains(criteria.text.strip())
        query = query.where(
            or_(
                Reservation.reservation_key.ilike(pattern, escape="\\"),
                Reservation.guest_name.ilike(pattern, escape="\\"),
                Reservation.guest_email.ilike(pattern, escape="\\"),
                Reservation.guest_phone.ilike(pattern, escape="\\"),
            )
        )
    if criteria.status:
        query = query.where(Reservation.status == criteria.status)
    if criteria.client:
        query = query.where(ApiClient.name == criteria.client)
    if criteria.property_name:
        query = query.where(
            Reservation.property_name.ilike(_contains(criteria.property_name), escape="\\")
        )
    if criteria.arrives_from:
        query = query.where(Reservation.starts_at >= _midnight(criteria.arrives_from))
    if criteria.arrives_until:
        query = query.where(
            Reservation.starts_at < _midnight(criteria.arrives_until) + timedelta(days=1)
        )
    page = max(criteria.page, 1)
    rows = list(
        await session.execute(
            query.order_by(Reservation.starts_at.desc(), Reservation.id)
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        )
    )
    stays = [Stay(reservation, name) for reservation, name in rows[:PAGE_SIZE]]
    return SearchPage(stays=stays, page=page, has_next=len(rows) > PAGE_SIZE)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=utcnow().tzinfo)


async def client_names(session: AsyncSession) -> list[str]:
    return list(await session.scalars(select(ApiClient.name).order_by(ApiClient.name)))


# One reservation ------------------------------------------------------------------------------


@dataclass
class Detail:
    reservation: Reservation
    client_name: str
    related: reservations.Related
    timeline: list[ReservationEvent]
    webhooks: list[SeamWebhook]
    grant_ids: list[str]


async def find_stay(
    session: AsyncSession, *, client_id: uuid.UUID | None, reservation_id: uuid.UUID
) -> Stay:
    """Another client's reservation is as unknown as a missing one: 404 either way."""
    row = (
        await session.execute(_stays_query(client_id).where(Reservation.id == reservation_id))
    ).one_or_none()
    if row is None:
        raise NotFound("no such reservation")
    return Stay(row[0], row[1])


async def detail(
    session: AsyncSession, *, client_id: uuid.UUID | None, reservation_id: uuid.UUID
) -> Detail:
    stay = await find_stay(session, client_id=client_id, reservation_id=reservation_id)
    reservation = stay.reservation
    related = await reservations.related(session, reservation_ids=[reservation.id])
    timeline = await read_timeline(session, reservation_id=reservation.id)
    all_methods = list(
        await session.scalars(
            select(AccessMethod).where(AccessMethod.reservation_id == reservation.id)
        )
    )
    grant_ids = sorted(
        {m.access_grant_id for m in all_methods}
        | {str(e.detail["access_grant_id"]) for e in timeline if e.detail.get("access_grant_id")}
        | ({reservation.access_grant_id} if reservation.access_grant_id else set())
    )
    method_ids = [m.access_method_id for m in all_methods]
    webhooks = await _webhooks_about(
        session,
        grant_ids=grant_ids,
        method_ids=method_ids,
        grant_key_prefix=reservations.grant_key(reservation.id, 1),
    )
    return Detail(
        reservation=reservation,
        client_name=stay.client_name,
        related=related,
        timeline=timeline,
        webhooks=webhooks,
        grant_ids=grant_ids,
    )


async def _webhooks_about(
    session: AsyncSession, *, grant_ids: list[str], method_ids: list[str], grant_key_prefix: str
) -> list[SeamWebhook]:
    """Inbox rows naming the reservation's grants or access methods. The inbox has no index on
    these (intake stays as cheap as it is); it is pruned after 30 days, so the scan is bounded."""
    payload = SeamWebhook.payload
    conditions = [payload["access_grant_key"].astext.startswith(grant_key_prefix)]
    if grant_ids:
        conditions.append(payload["access_grant_id"].astext.in_(grant_ids))
    if method_ids:
        conditions.append(payload["access_method_id"].astext.in_(method_ids))
    rows = await session.scalars(
        select(SeamWebhook).where(or_(*conditions)).order_by(SeamWebhook.received_at).limit(200)
    )
    return list(rows)


async def access_method(
    session: AsyncSession, *, reservation_id: uuid.UUID, access_method_id: str
) -> AccessMethod:
    method = await session.scalar(
        select(AccessMethod).where(
            AccessMethod.reservation_id == reservation_id,
            AccessMethod.access_method_id == access_method_id,
        )
    )
    if method is None:
        raise NotFound("no such access method")
    return method


# Health ---------------------------------------------------------------------------------------


@dataclass
class Health:
    now: datetime
    last_webhook_at: datetime | None
    webhooks_last_hour: dict[str, int]
    rejected_signatures: int
    rejected_since: datetime
    reconciler_last_pass_at: datetime | None
    reconciler_cursors: list[ReconcilerCursor]
    jobs: list[dict[str, Any]]
    errors_by_kind: list[tuple[str, int]]
    last_errors: list[tuple[str, int]]


class RejectedSignatures:
    """Webhooks refused for their signature are stored nowhere (by design: nothing unverified
    is written). The process counts them in its Prometheus counter; this keeps a few
    (time, total) readings, taken when Health is shown, to tell how many in the last hour.
    Per process: each replica counts what it received."""

    def __init__(self, started_at: datetime) -> None:
        self.readings: list[tuple[datetime, float]] = [(started_at, 0.0)]

    def in_last_hour(self, now: datetime) -> tuple[int, datetime]:
        total = rejected_signature_total()
        self.readings.append((now, total))
        hour_ago = now - timedelta(hours=1)
        older = [reading for reading in self.readings if reading[0] <= hour_ago]
        self.readings = ([older[-1]] if older else []) + [
            reading for reading in self.readings if reading[0] > hour_ago
        ][-120:]
        since, base = self.readings[0]
        return int(total - base), max(since, hour_ago)


def rejected_signature_total() -> float:
    total = 0.0
    for metric in WEBHOOKS.collect():
        for sample in metric.samples:
            # A verified body that is not a Seam event is stored (reason not_json, …);
            # only the verifier's refusals are signature problems.
            if (
                sample.name.endswith("_total")
                and sample.labels.get("outcome") == "rejected"
                and sample.labels.get("reason") in SIGNATURE_REASONS
            ):
                total += sample.value
    return total


SIGNATURE_REASONS = frozenset(
    {
        "bad_signature",
        "stale_timestamp",
        "missing_headers",
        "garbled_headers",
        "garbled_body",
        "unauthorized",
        "bad_request",
    }
)

ERROR_KINDS = tuple(
    kind.value
    for kind in (
        TimelineKind.FAILED,
        TimelineKind.ACCESS_METHOD_DELAY_IN_ISSUING,
        TimelineKind.ACCESS_METHOD_FAILED_TO_ISSUE,
        TimelineKind.ACCESS_METHOD_REVOKED,
        TimelineKind.DELIVERY_FAILED,
        TimelineKind.DOOR_LOST,
        TimelineKind.DOOR_UNSUPPORTED,
        TimelineKind.DOOR_FAILED,
    )
)


async def health(
    session: AsyncSession, *, client_id: uuid.UUID | None, rejected: RejectedSignatures
) -> Health:
    now = utcnow()
    last_webhook_at = await session.scalar(select(func.max(SeamWebhook.received_at)))
    webhooks_last_hour = dict(
        (outcome, count)
        for outcome, count in await session.execute(
            select(SeamWebhook.outcome, func.count())
            .where(SeamWebhook.received_at > now - timedelta(hours=1))
            .group_by(SeamWebhook.outcome)
        )
    )
    rejected_count, rejected_since = rejected.in_last_hour(now)
    reconciler_last_pass_at = await session.scalar(
        text(
            "SELECT max(e.at) FROM procrastinate_events e "
            "JOIN procrastinate_jobs j ON j.id = e.job_id "
            "WHERE j.task_name = 'reconciler.reconcile' AND e.type = 'succeeded'"
        )
    )
    cursors = list(await session.scalars(select(ReconcilerCursor).order_by(ReconcilerCursor.name)))
    jobs = [
        dict(row._mapping)
        for row in await session.execute(
            text(
                "SELECT task_name, "
                "count(*) FILTER (WHERE status = 'todo' AND (scheduled_at IS NULL "
                "  OR scheduled_at <= now())) AS waiting, "
                "count(*) FILTER (WHERE status = 'todo' AND attempts > 0) AS retrying, "
                "count(*) FILTER (WHERE status = 'doing') AS running, "
                "count(*) FILTER (WHERE status = 'failed') AS failed "
                "FROM procrastinate_jobs WHERE status IN ('todo', 'doing', 'failed') "
                "GROUP BY task_name ORDER BY task_name"
            )
        )
    ]
    errors_by_kind = [
        (kind, count)
        for kind, count in await session.execute(
            _scoped(
                select(ReservationEvent.kind, func.count())
                .join(Reservation, Reservation.id == ReservationEvent.reservation_id)
                .where(
                    ReservationEvent.kind.in_(ERROR_KINDS),
                    ReservationEvent.created_at > now - timedelta(hours=24),
                )
                .group_by(ReservationEvent.kind)
                .order_by(func.count().desc()),
                client_id,
            )
        )
    ]
    last_errors = [
        (str(error), count)
        for error, count in await session.execute(
            _scoped(
                select(Reservation.last_error, func.count())
                .where(Reservation.last_error.is_not(None), Reservation.ends_at > now)
                .group_by(Reservation.last_error)
                .order_by(func.count().desc())
                .limit(20),
                client_id,
            )
        )
    ]
    return Health(
        now=now,
        last_webhook_at=last_webhook_at,
        webhooks_last_hour=webhooks_last_hour,
        rejected_signatures=rejected_count,
        rejected_since=rejected_since,
        reconciler_last_pass_at=reconciler_last_pass_at,
        reconciler_cursors=cursors,
        jobs=jobs,
        errors_by_kind=errors_by_kind,
        last_errors=last_errors,
    )
