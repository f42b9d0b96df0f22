from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class ReconcilerCursor(Base):
    """How far the reconciler has read a Seam feed (`events.list` since this time)."""

    __tablename__ = "reconciler_cursor"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[datetime]
