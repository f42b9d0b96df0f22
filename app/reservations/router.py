from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from app.crypto import CodeCipher
from app.dependencies import ClientDep, RuntimeDep, SessionDep
from app.doors import service as doors
from app.errors import ErrorOut
from app.reservations import service
from app.reservations.doors import requested_doors
from app.reservations.models import CodeState, DoorState, Reservation, ReservationStatus
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
from app.timeline import timeline

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body could not be read"},
    401: {"model": ErrorOut, "description": "Missing or invalid API key"},
    404: {"model": ErrorOut, "description": "No such reservation for this client"},
    413: {"model": ErrorOut, "description": "Body over the size limit"},
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


def present(
    reservation: Reservation, related: service.Related, cipher: CodeCipher
) -> ReservationOut:
    return ReservationOut(
        reservation_key=reservation.reservation_key,
        status=ReservationStatus(reservation.status),
        guest=GuestOut(
            name=reservation.guest_name,
            email=reservation.guest_email,
            phone=reservation.guest_phone,
            locale=reservation.guest_locale,
        ),
        starts_at=reservation.starts_at,
        ends_at=reservation.ends_at,
        timezone=reservation.timezone,
        property_name=reservation.property_name,
        property_address=reservation.property_address,
        device_ids=reservation.device_ids,
        acs_entrance_ids=reservation.acs_entrance_ids,
        space_ids=reservation.space_ids,
        access_grant_id=reservation.access_grant_id,
        access_methods=[
            AccessMethodOut(
                access_method_id=method.access_method_id,
                mode=method.mode,
                is_issued=method.is_issued,
                issued_at=method.issued_at,
                code=(
                    cipher.decrypt(method.code_ciphertext)
                    if method.code_ciphertext and method.state == CodeState.CURRENT
                    else None
                ),
                is_backup_code=method.is_backup_code,
                state=CodeState(method.state),
            )
            for method in related.access_methods.get(reservation.id, [])
        ],
        doors=_doors(reservation, related),
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
            for delivery in related.deliveries.get(reservation.id, [])
        ],
        warnings=[WarningOut(**warning) for warning in reservation.warnings],
        last_error=reservation.last_error,
        created_at=reservation.created_at,
        updated_at=reservation.updated_at,
    )


def _doors(reservation: Reservation, related: service.Related) -> list[DoorOut]:
    stored = related.doors.get(reservation.id)
    if not stored:  # no grant yet: the doors asked for, each waiting for it
        return [
            DoorOut(type=door_type, id=door_id, name=None, state=DoorState.PENDING)
            for door_type, door_id in requested_doors(reservation)
        ]
    return [
        DoorOut(
            type=door.door_type,
            id=door.door_id,
            name=door.name,
            state=DoorState(door.state),
            reason=door.reason,
        )
        for door in stored
    ]


async def _present_one(
    session: SessionDep, runtime: RuntimeDep, reservation: Reservation
) -> ReservationOut:
    related = await service.related(session, reservation_ids=[reservation.id])
    return present(reservation, related, runtime.cipher)


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
    },
)
async def put_reservation(
    reservation_key: ReservationKey,
    body: ReservationIn,
    request: Request,
    response: Response,
    session: SessionDep,
    client_id: ClientDep,
    runtime: RuntimeDep,
) -> ReservationOut:
    """Create or update a reservation. An identical PUT changes nothing and calls nothing.
    Doors it adds must be doors of the workspace that take a PIN code (`GET /v1/doors`)."""
    raw_body = await request.json()
    await doors.check_reservation_doors(
        session,
        seam=runtime.seam,
        client_id=client_id,
        reservation_key=reservation_key,
        requested={
            field: doors.as_sent(raw_body, field, getattr(body, field))
            for field in doors.DOOR_FIELDS
        },
    )
    reservation, created = await service.put_reservation(
        session,
        client_id=client_id,
        reservation_key=reservation_key,
        data=body,
        delivery_lead=runtime.settings.guestkey_delivery_lead,
        reconcile_after=runtime.settings.guestkey_reconcile_after,
    )
    if created:  # nothing refers to a row this transaction made: no related rows to read
        resource = present(reservation, service.Related(), runtime.cipher)
    else:
        resource = await _present_one(session, runtime, reservation)
    await session.commit()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return resource


@router.get("/{reservation_key}", response_model=ReservationOut)
async def get_reservation(
    reservation_key: ReservationKey, session: SessionDep, client_id: ClientDep, runtime: RuntimeDep
) -> ReservationOut:
    reservation = await service.get_reservation(
        session, client_id=client_id, reservation_key=reservation_key
    )
    return await _present_one(session, runtime, reservation)


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
        items=[present(row, related, runtime.cipher) for row in rows], next_cursor=next_cursor
    )


@router.delete("/{reservation_key}", response_model=ReservationOut)
async def cancel_reservation(
    reservation_key: ReservationKey, session: SessionDep, client_id: ClientDep, runtime: RuntimeDep
) -> ReservationOut:
    """Cancel: the Seam grant is deleted (never the guest's identity). Idempotent."""
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
        }
    },
)
async def resend_code(
    reservation_key: ReservationKey, session: SessionDep, client_id: ClientDep, runtime: RuntimeDep
) -> ReservationOut:
    """Send the current code again to the guest, on every channel, now."""
    reservation = await service.resend(
        session, client_id=client_id, reservation_key=reservation_key
    )
    resource = await _present_one(session, runtime, reservation)
    await session.commit()
    return resource


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
