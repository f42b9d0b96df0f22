"""Local fixtures for delivery tests: a guest message factory and a real SMTP server.

No database: rendering and sending are pure I/O at the edges, so these tests run on their own.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from app.delivery.messages import GuestMessage

PIN_CODE = "482913"
REJECTED_PERMANENTLY = "nobody@example.com"
REJECTED_FOR_NOW = "busy@example.com"


def make_message(**overrides: Any) -> GuestMessage:
    values: dict[str, Any] = {
        "guest_name": "Ana Silva",
        "locale": "en",
        "property_name": "Seaside Loft",
        "code": PIN_CODE,
        "doors": ["Front Door", "Back Door"],
        # 15:00 and 11:00 in Lisbon (WET = UTC+0 in December).
        "starts_at": datetime(2026, 12, 1, 15, 0, tzinfo=UTC),
        "ends_at": datetime(2026, 12, 4, 11, 0, tzinfo=UTC),
        "timezone": "Europe/Lisbon",
    }
    values.update(overrides)
    return GuestMessage(**values)


@pytest.fixture
def message_factory() -> Callable[..., GuestMessage]:
    return make_message


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RecordingHandler:
    """Accepts every recipient except two, and keeps each message it receives."""

    messages: list[bytes] = field(default_factory=list)
    rejections: dict[str, str] = field(
        default_factory=lambda: {
            REJECTED_PERMANENTLY: "550 5.1.1 no such user",
            REJECTED_FOR_NOW: "451 4.3.0 mailbox busy, try again later",
        }
    )

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rejections:
            return self.rejections[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        self.messages.append(content)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd, in its own thread) on 127.0.0.1 and a free port."""
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(host="127.0.0.1", port=controller.port, handler=handler)
    finally:
        controller.stop()
