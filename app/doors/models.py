from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, new_id


class Door(Base):
    """A door of the Seam workspace as last read from Seam: a device, an ACS entrance or a
    space. `gone_at` is set when a full refresh no longer finds it (kept, so a reservation's
    door keeps its name)."""

    __tablename__ = "door"
    __table_args__ = (
        UniqueConstraint("door_type", "door_id"),
        CheckConstraint("door_type IN ('device', 'acs_entrance', 'space')", name="door_type"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    door_type: Mapped[str] = mapped_column(Text)
    door_id: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    # devices: can_program_online_access_codes; entrances: can_unlock_with_code; spaces: true
    can_take_pin_code: Mapped[bool]
    online: Mapped[bool | None]
    refreshed_at: Mapped[datetime]
    gone_at: Mapped[datetime | None]
