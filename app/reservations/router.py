from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query, Request, Response, status

from app.clients.limits import spend_seam_change
from app.crypto import CodeCipher, InvalidToken
from app.db import autocommit_connection
from app.dependencies import ClientDep, RuntimeDep, SessionDep, runtime_of
from app.doors import service as doors
from app.errors import ErrorOut, NotFound
from app.reservations import service
from app.reservations.models import (
    CodeState,
    DoorState,
    Reservation,
    ReservationStatus,
)
from app.reservations.schemas import (
    RESERVATION_KEY_PATTERN,
    AccessMethodOut,
    DeliveryOut,
    DoorOut,
    GuestOut,
    ReservationIn,
    ReservationOut,
    ReservationPage,
    Timeline,
    TimelineEntry,
    WarningOut,
)
from app.runtime import Runtime
from app.timeline import timeline

log = structlog.get_logger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body could not be read"},
    401: {"model": ErrorOut, "description": "Missing or invalid API key"},
    404: {"model": ErrorOut, "description": "No such reservation for this client"},
    413: {"model": ErrorOut, "description": "Body over the size limit"},
}
LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorOut, "description": "A limit was reached: see Retry-After"}
}
router = APIRouter(prefix="/v1/reservations", tags=["reservations"], responses=ERRORS)

ReservationKey = Annotated[
    str,
    Path(
        pattern=RESERVATION_KEY_PATTERN,
        min_length=1,
        max_length=128,
        description="The booking system's own id for the reservation, unique per client.",
    ),
]


def present(stored: service.StoredReservation, cipher: CodeCipher) -> ReservationOut:
    # Only the current code is shown; one that no configured key opens is null, with a warning.
    codes = {
        method.access_method_id: _readable_code(method, cipher)
        for method in stored.access_methods
        if method.state == CodeState.CURRENT and method.code_ciphertext
    }
    return ReservationOut(
        reservation_key=stored.reservation_key,
        status=ReservationStatus(stored.status),
        guest=GuestOut(
            name=stored.guest_name,
            email=stored.guest_email,
            phone=stored.guest_phone,
            locale=stored.guest_locale,
        ),
        starts_at=stored.starts_at,
        ends_at=stored.ends_at,
        timezone=stored.timezone,
        property_name=stored.property_name,
        property_address=stored.property_address,
        device_ids=stored.device_ids,
        acs_entrance_ids=stored.acs_entrance_ids,
        space_ids=stored.space_ids,
        access_grant_id=stored.access_grant_id,
        access_methods=[
            AccessMethodOut(
                access_method_id=method.access_method_id,
                mode=method.mode,
                is_issued=method.is_issued,
                issued_at=method.issued_at,
                code=codes.get(method.access_method_id),
                is_backup_code=method.is_backup_code,
                state=CodeState(method.state),
            )
            for method in stored.access_methods
        ],
        doors=_doors(stored),
        deliveries=[
            DeliveryOut(
                channel=delivery.channel,
                to=delivery.recipient,
                status=delivery.status,
                kind=delivery.kind,
                attempts=delivery.attempts,
                send_after=delivery.send_after,
                sent_at=delivery.sent_at,
                error=delivery.error,
            )
            for delivery in stored.deliveries
        ],
        warnings=[
            *(WarningOut(**warning) for warning in stored.warnings),
            *(
                WarningOut(
                    code="code_unreadable",
                    message="the stored code cannot be decrypted with GUESTKEY_ENCRYPTION_KEY "
                    "(a key was dropped before `guestkey reencrypt` finished)",
                )
                for method_id, code in codes.items()
                if code is None
            ),
        ],
        last_error=stored.last_error,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


def _doors(stored: service.StoredReservation) -> list[DoorOut]:
    if not stored.doors:  # no grant yet: the doors asked for, each waiting for it
        return [
            DoorOut(type=door_type, id=door_id, name=None, state=DoorState.PENDING)
            for field, door_type in doors.DOOR_FIELDS.items()
            for door_id in getattr(stored, field)
        ]
    return [
        DoorOut(
            type=door.door_type,
            id=door.door_id,
            name=door.name,
            state=DoorState(door.state),
            reason=door.reason,
        )
        for door in stored.doors
    ]


def _readable_code(method: service.StoredAccessMethod, cipher: CodeCipher) -> str | None:
    """The code, or None when no configured key opens it: one unreadable row must not turn
    the reservation, or a whole page of them, into a 500."""
    if not method.code_ciphertext:
        return None
    try:
        return cipher.decrypt(method.code_ciphertext)
    except InvalidToken:
        log.error("reservations.code_unreadable", access_method_id=method.access_method_id)
        return None


async def _present_one(
    session: SessionDep, runtime: RuntimeDep, reservation: Reservation
) -> ReservationOut:
    await session.flush()
    stored = await service.find_stored(session, reservation_id=reservation.id)
    assert stored is not None
    return present(stored, runtime.cipher)


@router.put(
    "/{reservation_key}",
    response_model=ReservationOut,
    responses={
        200: {"description": "The reservation existed; updated, or unchanged"},
        201: {"description": "Created"},
        409: {
            "model": ErrorOut,
            "description": "The reservation is cancelled (`reservation_cancelled`)",
        },
        **LIMITED,
    },
)
async def put_reservation(
    reservation_key: ReservationKey,
    body: ReservationIn,
    request: Request,
    response: Response,
    client_id: ClientDep,
) -> ReservationOut:
    """Create or update a reservation. An identical PUT changes nothing and calls nothing.
    Doors it adds must be doors of the workspace that take a PIN code (`GET /v1/doors`)."""
    runtime = runtime_of(request)
    # No session: a new reservation and an identical PUT take one statement on a connection of
    # the pool (see `autocommit_connection`); a change opens its own.
    stored, created = await service.put_reservation(
        runtime.sessionmaker,
        client_id=client_id,
        reservation_key=reservation_key,
        data=body,
        check_added_doors=functools.partial(_check_added_doors, runtime, request, body),
        delivery_lead=runtime.settings.guestkey_delivery_lead,
        reconcile_after=runtime.settings.guestkey_reconcile_after,
        before_seam_change=functools.partial(_spend_seam_change, runtime, client_id),
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return present(stored, runtime.cipher)


async def _check_added_doors(
    runtime: Runtime,
    request: Request,
    body: ReservationIn,
    stored: service.StoredReservation | None,
    known: Mapping[tuple[str, str], bool],
) -> None:
    """The doors the PUT adds to its reservation (all of them for a new one) must be doors of
    the workspace that take a PIN code; doors it already had were checked when added."""
    held = {field: set(getattr(stored, field)) if stored else set() for field in doors.DOOR_FIELDS}
    added = [
        (door_type, door_id)
        for field, door_type in doors.DOOR_FIELDS.items()
        for door_id in getattr(body, field)
        if door_id not in held[field]
    ]
    if all(known.get(door) for door in added):
        return  # none added, or each one a door the list holds as usable
    # The ids in the order the client sent them, so an error's index points at its own list.
    raw_body = await request.json()
    new = {
        field: [
            (index, door_id)
            for index, door_id in enumerate(doors.as_sent(raw_body, field, getattr(body, field)))
            if door_id not in held[field]
        ]
        for field in doors.DOOR_FIELDS
    }
    if any(new.values()):
        await doors.check_doors(runtime.sessionmaker, seam=runtime.seam, new=new, known=known)


@router.get("/{reservation_key}", response_model=ReservationOut)
async def get_reservation(
    reservation_key: ReservationKey, request: Request, client_id: ClientDep
) -> ReservationOut:
    runtime = runtime_of(request)
    async with autocommit_connection(runtime.sessionmaker) as connection:  # one statement
        stored = await service.find_stored(
            connection, client_id=client_id, reservation_key=reservation_key
        )
    if stored is None:
        raise NotFound(f"no reservation {reservation_key!r}")
    return present(stored, runtime.cipher)


@router.get("", response_model=ReservationPage)
async def list_reservations(
    session: SessionDep,
    client_id: ClientDep,
    runtime: RuntimeDep,
    status_filter: Annotated[ReservationStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ReservationPage:
    """The client's reservations, newest first; pass `next_cursor` back as `cursor`."""
    rows, next_cursor = await service.list_reservations(
        session, client_id=client_id, status=status_filter, limit=limit, cursor=cursor
    )
    related = await service.related(session, reservation_ids=[r.id for r in rows])
    return ReservationPage(
        items=[present(service.StoredReservation.of(row, related), runtime.cipher) for row in rows],
        next_cursor=next_cursor,
    )


@router.delete("/{reservation_key}", response_model=ReservationOut, responses=LIMITED)
async def cancel_reservation(
    reservation_key: ReservationKey, session: SessionDep, client_id: ClientDep, runtime: RuntimeDep
) -> ReservationOut:
    """Cancel: the Seam grant is deleted (never the guest's identity). Idempotent."""
    await _spend_seam_change(runtime, client_id)
    reservation = await service.cancel_reservation(
        session,
        client_id=client_id,
        reservation_key=reservation_key,
        callbacks=runtime.settings.guestkey_callback_url is not None,
    )
    resource = await _present_one(session, runtime, reservation)
    await session.commit()
    return resource


@router.post(
    "/{reservation_key}/resend",
    response_model=ReservationOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        409: {
            "model": ErrorOut,
            "description": "No code issued (`no_issued_code`), "
            "or cancelled (`reservation_cancelled`)",
        },
        **LIMITED,
    },
)
async def resend_code(
    reservation_key: ReservationKey, session: SessionDep, client_id: ClientDep, runtime: RuntimeDep
) -> ReservationOut:
    """Send the current code again to the guest, on every channel, now."""
    await _spend_seam_change(runtime, client_id)
    reservation = await service.resend(
        session,
        client_id=client_id,
        reservation_key=reservation_key,
        limit=runtime.settings.guestkey_resend_limit,
    )
    resource = await _present_one(session, runtime, reservation)
    await session.commit()
    return resource


async def _spend_seam_change(runtime: Runtime, client_id: uuid.UUID) -> None:
    await spend_seam_change(
        runtime.engine, client_id=client_id, rate=runtime.settings.guestkey_seam_change_limit
    )


@router.get("/{reservation_key}/events", response_model=Timeline)
async def reservation_timeline(
    reservation_key: ReservationKey, session: SessionDep, client_id: ClientDep
) -> Timeline:
    """What happened to the reservation, oldest first, with reasons."""
    reservation = await service.get_reservation(
        session, client_id=client_id, reservation_key=reservation_key
    )
    events = await timeline(session, reservation_id=reservation.id)
    return Timeline(
        reservation_key=reservation.reservation_key,
        events=[
            TimelineEntry(kind=e.kind, reason=e.reason, detail=e.detail, at=e.created_at)
            for e in events
        ],
    )
