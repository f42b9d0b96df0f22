"""Senders: a real SMTP server, the outbox folder, and Twilio behind an httpx MockTransport.

What matters to the caller is whether a failure is transient (retry later) or permanent
(give up and record why), and that nothing secret reaches a log.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import structlog
from pydantic import SecretStr

from app.config import Settings
from app.delivery.channels import (
    DeliveryFailed,
    OutboxEmailSender,
    OutboxSmsSender,
    SmtpEmailSender,
    TwilioSmsSender,
    build_email_sender,
    build_sms_sender,
)
from app.delivery.messages import render_email, render_sms
from tests.delivery.conftest import (
    PIN_CODE,
    REJECTED_FOR_NOW,
    REJECTED_PERMANENTLY,
    SmtpServer,
    free_port,
    make_message,
)

MAIL_FROM = "guestkey <no-reply@guestkey.test>"
TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
TWILIO_TOKEN = "twilio-auth-token-do-not-log"
SMTP_PASSWORD = "smtp-password-do-not-log"


def guest_email(to: str = "ana@example.com") -> EmailMessage:
    return render_email(make_message(), to=to, mail_from=MAIL_FROM)


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


# --- SMTP -------------------------------------------------------------------------------------


def smtp_sender(server: SmtpServer, **overrides: object) -> SmtpEmailSender:
    options: dict[str, object] = {"host": server.host, "port": server.port, "timeout_seconds": 2}
    options.update(overrides)
    return SmtpEmailSender(**options)  # type: ignore[arg-type]


async def test_smtp_sender_delivers_the_code_and_every_door(smtp_server: SmtpServer) -> None:
    before = len(smtp_server.handler.messages)

    await smtp_sender(smtp_server).send(guest_email())

    arrived = parse(smtp_server.handler.messages[before])
    assert arrived["To"] == "ana@example.com"
    assert arrived["Subject"] == "Your door code for Seaside Loft"
    text = plain_text(arrived)
    assert PIN_CODE in text
    assert "Front Door" in text and "Back Door" in text


async def test_smtp_server_down_is_transient() -> None:
    sender = SmtpEmailSender(host="127.0.0.1", port=free_port(), timeout_seconds=2)

    with pytest.raises(DeliveryFailed) as failure:
        await sender.send(guest_email())

    assert failure.value.transient


async def test_smtp_server_that_never_answers_times_out_as_transient() -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # never sends the 220 greeting
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sender = SmtpEmailSender(host="127.0.0.1", port=port, timeout_seconds=0.2)
        with pytest.raises(DeliveryFailed) as failure:
            await sender.send(guest_email())
    finally:
        release.set()
        server.close()
        await server.wait_closed()

    assert failure.value.transient


async def test_smtp_550_for_the_recipient_is_permanent(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        await smtp_sender(smtp_server).send(guest_email(to=REJECTED_PERMANENTLY))

    assert not failure.value.transient
    assert failure.value.status == 550


async def test_smtp_451_for_the_recipient_is_transient(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        await smtp_sender(smtp_server).send(guest_email(to=REJECTED_FOR_NOW))

    assert failure.value.transient
    assert failure.value.status == 451


def test_smtp_sender_repr_does_not_show_the_password() -> None:
    sender = SmtpEmailSender(
        host="smtp.example.com", username="guestkey", password=SecretStr(SMTP_PASSWORD)
    )

    assert SMTP_PASSWORD not in repr(sender)


# --- Outbox -----------------------------------------------------------------------------------


async def test_outbox_email_is_a_parseable_eml_and_the_log_has_no_code(tmp_path: Path) -> None:
    message = guest_email()

    with structlog.testing.capture_logs() as logs:
        await OutboxEmailSender(tmp_path / "outbox").send(message)

    files = list((tmp_path / "outbox").iterdir())
    assert [file.suffix for file in files] == [".eml"]
    written = parse(files[0].read_bytes())
    assert written["Message-ID"] == message["Message-ID"]
    assert PIN_CODE in plain_text(written)
    assert [entry["event"] for entry in logs] == ["delivery.outbox.email"]
    assert logs[0]["path"] == str(files[0])
    assert logs[0]["to"] == "ana@example.com"
    assert PIN_CODE not in json.dumps(logs, default=str)


async def test_outbox_file_names_sort_by_time_and_leave_no_temporary_files(
    tmp_path: Path,
) -> None:
    sender = OutboxEmailSender(tmp_path)

    for _ in range(3):
        await sender.send(guest_email())

    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 3
    assert all(name.endswith(".eml") and not name.startswith(".") for name in names)
    assert all("guestkey.test" in name for name in names)  # from the Message-ID


async def test_outbox_sms_is_a_text_file_and_the_log_has_no_code_or_body(tmp_path: Path) -> None:
    body = render_sms(make_message())

    with structlog.testing.capture_logs() as logs:
        await OutboxSmsSender(tmp_path).send(to="+351912345678", body=body)

    (file,) = tmp_path.iterdir()
    assert file.suffix == ".txt"
    assert file.read_text() == f"To: +351912345678\n\n{body}\n"
    assert [entry["event"] for entry in logs] == ["delivery.outbox.sms"]
    assert logs[0]["to"] == "+351912345678"
    logged = json.dumps(logs, default=str)
    assert PIN_CODE not in logged
    assert "Front Door" not in logged


async def test_unwritable_outbox_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")

    with pytest.raises(DeliveryFailed) as failure:
        await OutboxSmsSender(blocker / "outbox").send(to="+351912345678", body="hello")

    assert failure.value.transient


# --- Twilio -----------------------------------------------------------------------------------


Handler = Callable[[httpx.Request], httpx.Response]


def twilio_sender(handler: Handler) -> TwilioSmsSender:
    return TwilioSmsSender(
        account_sid=TWILIO_SID,
        auth_token=SecretStr(TWILIO_TOKEN),
        from_number="+15005550006",
        endpoint="https://twilio.test/",
        timeout_seconds=2,
        transport=httpx.MockTransport(handler),
    )


async def test_twilio_posts_the_form_with_basic_auth() -> None:
    twilio_requests: list[httpx.Request] = []

    def accept(request: httpx.Request) -> httpx.Response:
        twilio_requests.append(request)
        return httpx.Response(201, json={"sid": "SM123", "status": "queued"})

    body = render_sms(make_message())
    with structlog.testing.capture_logs() as logs:
        await twilio_sender(accept).send(to="+351912345678", body=body)

    (request,) = twilio_requests
    assert request.method == "POST"
    assert str(request.url) == f"https://twilio.test/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "To": ["+351912345678"],
        "From": ["+15005550006"],
        "Body": [body],
    }
    expected_auth = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    assert [entry["event"] for entry in logs] == ["delivery.twilio.sent"]
    assert logs[0]["message_sid"] == "SM123"
    logged = json.dumps(logs, default=str)
    assert PIN_CODE not in logged and TWILIO_TOKEN not in logged


@pytest.mark.parametrize(
    ("status", "transient"),
    [(500, True), (503, True), (429, True), (401, True), (400, False), (404, False)],
)
async def test_twilio_status_decides_transient_or_permanent(status: int, transient: bool) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"code": 21211, "message": "Invalid 'To' number"})

    with pytest.raises(DeliveryFailed) as failure:
        await twilio_sender(reply).send(to="+1", body="hello")

    assert failure.value.transient is transient
    assert failure.value.status == status
    assert TWILIO_TOKEN not in str(failure.value)


async def test_twilio_429_passes_on_retry_after() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "30"})

    with pytest.raises(DeliveryFailed) as failure:
        await twilio_sender(busy).send(to="+351912345678", body="hello")

    assert failure.value.transient
    assert failure.value.retry_after == 30


async def test_twilio_network_error_is_transient() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(DeliveryFailed) as failure:
        await twilio_sender(unreachable).send(to="+351912345678", body="hello")

    assert failure.value.transient


# --- Wiring -----------------------------------------------------------------------------------


def test_without_smtp_host_email_goes_to_the_outbox_under_the_data_dir(tmp_path: Path) -> None:
    sender = build_email_sender(Settings(GUESTKEY_DATA_DIR=tmp_path))

    assert isinstance(sender, OutboxEmailSender)
    assert sender.directory == tmp_path / "outbox"


def test_outbox_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUESTKEY_OUTBOX_DIR", str(tmp_path / "mail"))

    sender = build_sms_sender(Settings())

    assert isinstance(sender, OutboxSmsSender)
    assert sender.directory == tmp_path / "mail"


def test_with_smtp_host_email_goes_over_smtp() -> None:
    settings = Settings(smtp_host="smtp.example.com", smtp_tls="starttls")

    assert isinstance(build_email_sender(settings), SmtpEmailSender)


def test_twilio_provider_needs_its_credentials() -> None:
    with pytest.raises(ValueError, match="TWILIO_AUTH_TOKEN"):
        build_sms_sender(Settings(sms_provider="twilio", twilio_account_sid=TWILIO_SID))

    sender = build_sms_sender(
        Settings(
            sms_provider="twilio",
            twilio_account_sid=TWILIO_SID,
            twilio_auth_token=TWILIO_TOKEN,
            twilio_from="+15005550006",
        )
    )
    assert isinstance(sender, TwilioSmsSender)
    assert TWILIO_TOKEN not in repr(sender)
