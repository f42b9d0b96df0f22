"""The inbound path: a code Seam issued becomes the guest's, once, on the right reservation.

`refresh_access_method` re-reads an access method from Seam (an event is only a hint), checks
that it belongs to the reservation's grant, stores its code encrypted with the doors it opens,
supersedes the code it replaces, and plans the guest's messages. At most one code per
reservation and mode is `current` (DESIGN.md §9.4); a superseded or revoked code is never
sent again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.callbacks.service import notify
from app.db import autocommit, utcnow
from app.delivery.flows import send_planned
from app.delivery.service import Planned, plan_deliveries
from app.reservations import doors
from app.reservations.models import AccessMethod, CodeState, Reservation, ReservationStatus
from app.runtime import Runtime
from app.seam.client import AccessMethodState
from app.seam.errors import SeamNotFound
from app.timeline import TimelineKind, record_event
from app.webhooks.models import InboxOutcome, SeamWebhook

log = structlog.get_logger(__name__)

# Warnings that an issued code answers.
ISSUING_WARNINGS = ("delay_in_issuing", "failed_to_issue")


async def refresh_access_method(
    runtime: Runtime,
    *,
    reservation_id: uuid.UUID,
    access_method_id: str,
    access_grant_ids: Sequence[str] = (),
    seam_event: str | None = None,
    webhook_id: uuid.UUID | None = None,
    send_now: bool = False,
) -> bool:
    """Re-read an access method from Seam and, when its code is issued (or new), make it the
    reservation's current code. `access_grant_ids`: the grants the event says it belongs to.
    `webhook_id`: the event that asked, marked processed with the code when one is stored;
    returns whether it was. `send_now` (a job, not a request): the messages due now are sent
    from here once the code is stored, each with a job waiting in case this one dies first."""
    try:
        state = await runtime.seam.get_access_method(access_method_id)
    except SeamNotFound:
        await _method_gone(runtime, reservation_id, access_method_id)
        return False
    if not state.is_issued or not state.code:
        log.info("reservations.code.not_issued_yet", access_method_id=access_method_id)
        return False
    if not await _belongs_to_reservation(runtime, reservation_id, state, access_grant_ids):
        return False
    opened = await runtime.seam.doors_of([access_method_id])

    async with runtime.sessionmaker() as session:
        reservation = await session.get(Reservation, reservation_id, with_for_update=True)
        assert reservation is not None
        if reservation.status == ReservationStatus.CANCELLED or reservation.access_grant_id is None:
            return False
        method = await session.scalar(
            select(AccessMethod).where(AccessMethod.access_method_id == access_method_id)
        )
        if method is None:  # issued before our create call returned, or a backup code
            method = AccessMethod(
                reservation_id=reservation_id,
                access_method_id=access_method_id,
                access_grant_id=reservation.access_grant_id,
                mode=state.mode,
                state=CodeState.CURRENT.value,
                code_version=0,
            )
            session.add(method)
        if method.state != CodeState.CURRENT:
            return False  # superseded or revoked: that code is no longer the guest's
        previous = (
            runtime.cipher.decrypt(method.code_ciphertext) if method.code_ciphertext else None
        )
        new_code = previous != state.code
        method.is_issued = True
        method.issued_at = _parse_time(state.issued_at) or method.issued_at or utcnow()
        method.is_backup_code = state.is_backup_code
        method.original_access_method_id = state.original_access_method_id
        if new_code:
            method.code_ciphertext = runtime.cipher.encrypt(state.code)
            method.code_version += 1
        await session.flush()
        replaced = await supersede_codes(
            session,
            reservation_id=reservation_id,
            reason="backup code" if state.is_backup_code else "a newer code",
            mode=method.mode,
            keep=access_method_id,
        )
        await doors.store_granted_doors(session, reservation_id=reservation_id, doors=opened)
        reservation.warnings = doors.merge_warnings(
            reservation.warnings, drop_codes=ISSUING_WARNINGS
        )
        planned: list[Planned] = []
        if new_code:
            planned = await _announce_new_code(
                runtime,
                session,
                reservation=reservation,
                method=method,
                first=previous is None and not replaced,
                reason="backup code" if state.is_backup_code else seam_event,
                door_names=[door.name for door in opened],
                send_now=send_now,
            )
        if webhook_id is not None:
            await session.execute(
                update(SeamWebhook)
                .where(SeamWebhook.id == webhook_id)
                .values(outcome=InboxOutcome.PROCESSED.value, processed_at=utcnow())
            )
        await session.commit()
    if new_code:
        log.info(
            "reservations.code.stored", reservation_id=str(reservation_id), new=previous is None
        )
    # Messages due now go out from here, recorded first so they cannot repeat; each has a
    # job waiting in case this one dies first.
    for delivery in planned:
        if delivery.backstop_job_id is not None:
            await send_planned(runtime, delivery)
    return webhook_id is not None


async def _announce_new_code(
    runtime: Runtime,
    session: AsyncSession,
    *,
    reservation: Reservation,
    method: AccessMethod,
    first: bool,
    reason: str | None,
    door_names: list[str],
    send_now: bool,
) -> list[Planned]:
    if reservation.status != ReservationStatus.FAILED or door_names:
        # A code that opens a door: the stay is not failed (DESIGN §9.2), whatever Seam said
        # of its doors before (a lock that came back online and took its code after all).
        reservation.status = ReservationStatus.ISSUED.value
    reservation.last_error = None
    reservation.next_check_at = None
    reservation.updated_at = utcnow()
    await record_event(
        session,
        reservation_id=reservation.id,
        kind=TimelineKind.ISSUED if first else TimelineKind.CODE_CHANGED,
        reason=reason,
        access_method_id=method.access_method_id,
        doors=door_names,
    )
    planned = await plan_deliveries(
        session,
        reservation=reservation,
        method=method,
        kind="new_code",
        lead=runtime.settings.guestkey_delivery_lead,
        send_now=send_now,
    )
    await notify(
        session,
        reservation=reservation,
        event_type="reservation.issued" if first else "reservation.code_changed",
        enabled=runtime.settings.guestkey_callback_url is not None,
    )
    return planned


async def supersede_codes(
    session: AsyncSession,
    *,
    reservation_id: uuid.UUID,
    reason: str,
    mode: str | None = None,
    keep: str | None = None,
) -> list[str]:
    """Every current code of the reservation (of `mode`, but `keep`) is superseded; their
    messages not yet sent are then skipped. Returns the superseded access method ids."""
    query = (
        update(AccessMethod)
        .where(
            AccessMethod.reservation_id == reservation_id,
            AccessMethod.state == CodeState.CURRENT.value,
        )
        .values(state=CodeState.SUPERSEDED.value, removed_at=utcnow())
        .returning(AccessMethod.access_method_id, AccessMethod.is_issued)
    )
    if mode is not None:
        query = query.where(AccessMethod.mode == mode)
    if keep is not None:
        query = query.where(AccessMethod.access_method_id != keep)
    rows = (await session.execute(query)).all()
    for access_method_id, was_issued in rows:
        if was_issued:
            await record_event(
                session,
                reservation_id=reservation_id,
                kind=TimelineKind.CODE_SUPERSEDED,
                reason=reason,
                access_method_id=access_method_id,
            )
    return [access_method_id for access_method_id, _ in rows]


async def _belongs_to_reservation(
    runtime: Runtime,
    reservation_id: uuid.UUID,
    state: AccessMethodState,
    access_grant_ids: Sequence[str],
) -> bool:
    """An access method guestkey stored is the reservation's; one it has not stored yet is
    only when it belongs to the reservation's current grant — as the event says, or else as
    Seam lists the grant's methods."""
    async with autocommit(runtime.sessionmaker) as session:
        stored, grant_id = (
            await session.execute(
                select(
                    select(AccessMethod.reservation_id)
                    .where(AccessMethod.access_method_id == state.access_method_id)
                    .scalar_subquery(),
                    select(Reservation.access_grant_id)
                    .where(Reservation.id == reservation_id)
                    .scalar_subquery(),
                )
            )
        ).one()
    belongs: bool
    if stored is not None:
        belongs = stored == reservation_id
    elif grant_id is None:
        return False
    elif access_grant_ids:
        belongs = grant_id in access_grant_ids
    else:
        listed = await runtime.seam.list_access_methods(grant_id)
        belongs = any(m.access_method_id == state.access_method_id for m in listed)
    if not belongs:
        async with runtime.sessionmaker() as session:
            await record_event(
                session,
                reservation_id=reservation_id,
                kind=TimelineKind.ACCESS_METHOD_NOT_OURS,
                reason="the access method belongs to another grant",
                access_method_id=state.access_method_id,
            )
            await session.commit()
        log.warning(
            "reservations.code.other_grant",
            reservation_id=str(reservation_id),
            access_method_id=state.access_method_id,
        )
    return belongs


async def _method_gone(runtime: Runtime, reservation_id: uuid.UUID, access_method_id: str) -> None:
    async with runtime.sessionmaker() as session:
        changed = await session.scalar(
            update(AccessMethod)
            .where(
                AccessMethod.access_method_id == access_method_id,
                AccessMethod.reservation_id == reservation_id,
                AccessMethod.state == CodeState.CURRENT.value,
            )
            .values(state=CodeState.REVOKED.value, removed_at=utcnow())
            .returning(AccessMethod.id)
        )
        if changed is not None:
            await record_event(
                session,
                reservation_id=reservation_id,
                kind=TimelineKind.ACCESS_METHOD_GONE,
                access_method_id=access_method_id,
            )
        await session.commit()


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


async def request_fresh_code(runtime: Runtime, *, reservation_id: uuid.UUID, reason: str) -> str:
    """Ask Seam for a new PIN code on the stay's grant (`access_grants/request_access_methods`)
    and return the new access method's id. Once Seam issues it, `refresh_access_method` (called
    here when Seam issued it at once, else by its `access_method.issued` event) makes it the
    current code, supersedes the old one and sends it to the guest once.

    Raises `FreshCodeRefused` for a stay without a live grant; Seam's errors pass through."""
    async with runtime.sessionmaker() as session:
        reservation = await session.get(Reservation, reservation_id)
        assert reservation is not None
        grant_id = reservation.access_grant_id
        if reservation.status == ReservationStatus.CANCELLED or grant_id is None:
            raise FreshCodeRefused("the stay has no access grant to add a code to")
        known = set(
            await session.scalars(
                select(AccessMethod.access_method_id).where(
                    AccessMethod.reservation_id == reservation_id
                )
            )
        )
    grant = await runtime.seam.request_code(grant_id)
    new_ids = [m for m in grant.access_method_ids if m not in known]
    if not new_ids:
        raise FreshCodeRefused("Seam added no access method to the grant")
    access_method_id = new_ids[-1]
    async with runtime.sessionmaker() as session:
        await record_event(
            session,
            reservation_id=reservation_id,
            kind=TimelineKind.FRESH_CODE_REQUESTED,
            reason=reason,
            access_method_id=access_method_id,
        )
        await session.commit()
    await refresh_access_method(
        runtime,
        reservation_id=reservation_id,
        access_method_id=access_method_id,
        access_grant_ids=[grant_id],
        seam_event="fresh code",
    )
    log.info("reservations.code.fresh_requested", reservation_id=str(reservation_id))
    return access_method_id


class FreshCodeRefused(Exception):
    """A fresh code cannot be asked for: the stay has no live grant."""
