"""Helpers for the guest's page tests: the link in a message, the page as a guest opens it."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any

import httpx

from app.reservations.models import AccessMethod
from app.runtime import Runtime

PUBLIC_URL = "https://stay.example.test"
SUPPORT_CONTACT = "+351 210 000 000"
LINK = re.compile(re.escape(PUBLIC_URL) + r"/g/([A-Za-z0-9_-]{43})")


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(message: EmailMessage) -> str:
    """The path of the guest's page in a message (`/g/<token>`)."""
    found = LINK.search(plain_text(message))
    assert found is not None, "no page link in the message"
    return f"/g/{found.group(1)}"


def code_in(message: EmailMessage) -> str:
    # The code's own line, indented, in any language ("    Door code: 1234").
    found = re.search(r"^ {4}\S.*?(\d{4,9})\s*$", plain_text(message), re.MULTILINE)
    assert found is not None
    return found.group(1)


def guest_browser(app: Any) -> httpx.AsyncClient:
    """A guest's HTTP client: no API key, just the link."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PUBLIC_URL)


async def codes_of(runtime: Runtime, reservation_key: str = "bk-1") -> list[tuple[str, str]]:
    """(state, code) of every code of a reservation, oldest first."""
    from sqlalchemy import select

    from app.reservations.models import Reservation

    async with runtime.sessionmaker() as session:
        rows = await session.scalars(
            select(AccessMethod)
            .join(Reservation, Reservation.id == AccessMethod.reservation_id)
            .where(Reservation.reservation_key == reservation_key)
            .order_by(AccessMethod.created_at)
        )
        return [
            (row.state, runtime.cipher.decrypt(row.code_ciphertext) if row.code_ciphertext else "")
            for row in rows
        ]
