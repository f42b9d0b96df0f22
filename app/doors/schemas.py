"""The door list as booking systems read it (DESIGN.md §9.2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class DoorOut(BaseModel):
    type: Literal["device", "acs_entrance", "space"]
    id: str
    name: str
    can_take_pin_code: bool
    online: bool | None


class DoorList(BaseModel):
    items: list[DoorOut]
