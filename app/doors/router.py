from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.dependencies import ClientDep, SessionDep
from app.doors import service
from app.doors.schemas import DoorList, DoorOut
from app.errors import ErrorOut

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid API key"},
}
router = APIRouter(prefix="/v1/doors", tags=["doors"], responses=ERRORS)


@router.get("", response_model=DoorList)
async def list_doors(session: SessionDep, client_id: ClientDep) -> DoorList:
    """The Seam workspace's doors as guestkey last read them (refreshed every few minutes and
    on Seam's door events). Name doors of this list in a reservation's `device_ids`,
    `acs_entrance_ids` and `space_ids`; one whose `can_take_pin_code` is false is refused."""
    doors = await service.list_doors(session)
    return DoorList(
        items=[
            DoorOut(
                type=door.door_type,
                id=door.door_id,
                name=door.name,
                can_take_pin_code=door.can_take_pin_code,
                online=door.online,
            )
            for door in doors
        ]
    )
