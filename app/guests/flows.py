""" "My code doesn't work" (DESIGN.md §9.10): look at what Seam sees, say it plainly, and when
Seam sees nothing wrong, get the guest a fresh code.

The guest's report is answered while they stand at the door, so Seam is asked at once (the
access method, and the doors: online or not) rather than through a job. A report is limited to
one per `REPORT_INTERVAL` per stay and a fresh code to `GUESTKEY_FRESH_CODE_LIMIT` per stay;
past either the page points to the support contact. Every report reaches the timeline and the
booking system (`reservation.guest_reported_problem`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import select

from app.callbacks.service import notify
from app.guests.service import REPORT_INTERVAL, page_state, stay_doors
from app.reservations.codes import FreshCodeRefused, refresh_access_method, request_fresh_code
from app.reservations.models import AccessMethod, CodeState, Reservation, ReservationDoor
from app.runtime import Runtime
from app.seam.errors import SeamError, SeamNotFound
from app.timeline import TimelineKind, record_event

log = structlog.get_logger(__name__)

# How long the page waits for Seam to issue a fresh code before saying it is on its way.
FRESH_CODE_WAIT_SECONDS = 4.0
_POLL_SECONDS = 0.5


class Finding(enum.StrEnum):
    """What guestkey found, as the page and the booking system are told."""

    DOOR_OFFLINE = "door_offline"  # Seam cannot reach the lock: no code can reach it either
    CODE_NOT_ISSUED = "code_not_issued"  # the code is not on the lock yet
    FAILED_TO_ISSUE = "failed_to_issue"  # Seam could not put the code on the lock
    FRESH_CODE = "fresh_code"  # Seam saw no problem: a fresh code was asked for
    FRESH_CODE_LIMIT = "fresh_code_limit"  # no problem seen, and no fresh code left
    TOO_SOON = "too_soon"  # a report a moment ago: not checked again
    SEAM_UNAVAILABLE = "seam_unavailable"  # Seam could not be asked just now


@dataclass(frozen=True)
class Report:
    finding: Finding
    # The doors the finding is about (names), e.g. the ones offline.
    doors: list[str] = field(default_factory=list)
    # For FRESH_CODE: whether Seam issued it while the guest waited (then it is the current code).
    fresh_code_ready: bool = False


async def report_problem(
    runtime: Runtime,
    *,
    reservation_id: uuid.UUID,
    door_id: str | None,
    now: datetime,
) -> Report:
    """Handle one "my code doesn't work" from the guest, about one door or (None) any."""
    async with runtime.sessionmaker() as session:
        page = await page_state(session, reservation_id=reservation_id, for_update=True)
        if page.last_report_at is not None and now - page.last_report_at < REPORT_INTERVAL:
            return Report(Finding.TOO_SOON)
        page.last_report_at = now  # claimed before Seam is asked: two taps make one report
        fresh_codes = page.fresh_codes
        doors = await stay_doors(session, reservation_id=reservation_id)
        chosen = [door for door in doors if door.door_id == door_id] or doors
        method_id = await session.scalar(
            select(AccessMethod.access_method_id)
            .where(
                AccessMethod.reservation_id == reservation_id,
                AccessMethod.mode == "code",
                AccessMethod.state == CodeState.CURRENT.value,
            )
            .order_by(AccessMethod.created_at.desc())
            .limit(1)
        )
        await session.commit()

    report = await _ask_seam(runtime, method_id=method_id, doors=chosen)
    if report is None:  # Seam sees nothing wrong
        if fresh_codes >= runtime.settings.guestkey_fresh_code_limit:
            report = Report(Finding.FRESH_CODE_LIMIT)
        else:
            report = await _fresh_code(runtime, reservation_id=reservation_id)
    await _record_report(runtime, reservation_id=reservation_id, door_id=door_id, report=report)
    log.info("guests.problem_reported", reservation_id=str(reservation_id), finding=report.finding)
    return report


async def _ask_seam(
    runtime: Runtime, *, method_id: str | None, doors: list[ReservationDoor]
) -> Report | None:
    """The problem Seam shows, or None when it shows none."""
    try:
        # Seam reports no connectivity for an entrance: only a lock can be seen offline.
        devices = [d.door_id for d in doors if d.door_type == "device"]
        seen = await runtime.seam.list_devices(device_ids=devices) if devices else []
        offline = {door.id for door in seen if door.online is False}
        if offline:
            names = [d.name or d.door_id for d in doors if d.door_id in offline]
            return Report(Finding.DOOR_OFFLINE, doors=names)
        if method_id is None:
            return Report(Finding.CODE_NOT_ISSUED)
        try:
            method = await runtime.seam.get_access_method(method_id)
        except SeamNotFound:
            return None  # the code is gone at Seam: a fresh one is the answer
    except SeamError as error:
        log.warning("guests.seam_unavailable", error=str(error))
        return Report(Finding.SEAM_UNAVAILABLE)
    if any(e.get("error_code") == "failed_to_issue" for e in method.errors):
        return Report(Finding.FAILED_TO_ISSUE)
    if not method.is_issued or any(
        w.get("warning_code") == "delay_in_issuing" for w in method.warnings
    ):
        return Report(Finding.CODE_NOT_ISSUED)
    return None


async def _fresh_code(runtime: Runtime, *, reservation_id: uuid.UUID) -> Report:
    try:
        access_method_id = await request_fresh_code(
            runtime, reservation_id=reservation_id, reason="the guest reported the code not working"
        )
    except (SeamError, FreshCodeRefused) as error:
        log.warning("guests.fresh_code_failed", error=str(error))
        return Report(Finding.SEAM_UNAVAILABLE)
    async with runtime.sessionmaker() as session:
        page = await page_state(session, reservation_id=reservation_id, for_update=True)
        page.fresh_codes += 1
        page.awaiting_access_method_id = access_method_id
        await session.commit()
    ready = await _wait_until_current(
        runtime, reservation_id=reservation_id, access_method_id=access_method_id
    )
    return Report(Finding.FRESH_CODE, fresh_code_ready=ready)


async def _wait_until_current(
    runtime: Runtime, *, reservation_id: uuid.UUID, access_method_id: str
) -> bool:
    """Wait a few seconds for Seam to issue the new code, reading it as the webhook's job would
    (whichever stores it first, the other finds nothing new to do)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FRESH_CODE_WAIT_SECONDS
    while True:
        async with runtime.sessionmaker() as session:
            state = await session.scalar(
                select(AccessMethod.state).where(AccessMethod.access_method_id == access_method_id)
            )
        if state is not None:
            return state == CodeState.CURRENT
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)
        with contextlib.suppress(SeamError):  # the webhook's job will store it
            await refresh_access_method(
                runtime,
                reservation_id=reservation_id,
                access_method_id=access_method_id,
                seam_event="fresh code",
            )


async def _record_report(
    runtime: Runtime, *, reservation_id: uuid.UUID, door_id: str | None, report: Report
) -> None:
    async with runtime.sessionmaker() as session:
        reservation = await session.get(Reservation, reservation_id)
        assert reservation is not None
        await record_event(
            session,
            reservation_id=reservation_id,
            kind=TimelineKind.GUEST_REPORTED_PROBLEM,
            reason=report.finding.value,
            door_id=door_id,
            doors=report.doors,
        )
        await notify(
            session,
            reservation=reservation,
            event_type="reservation.guest_reported_problem",
            enabled=runtime.settings.guestkey_callback_url is not None,
            detail={"problem": {"door_id": door_id, "finding": report.finding.value}},
        )
        await session.commit()
