"""How a rendered message reaches a guest: SMTP or Twilio, or a local outbox folder.

Every sender turns its failures into one `DeliveryFailed` whose `transient` flag is the only
thing the caller decides on: transient → try again later (server down, timeout, 4xx SMTP reply,
429/5xx, credentials an operator can fix); permanent → record why and stop (the recipient
does not exist, the provider refused the message itself). Without SMTP or SMS credentials
(sandbox, development) messages are written as files to the outbox, so the whole flow runs
with nothing to sign up for.

Logs name the recipient and where a message went — never the PIN code, the body, the SMTP
password or the Twilio token.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Literal, Protocol

import aiosmtplib
import httpx
import structlog
from pydantic import SecretStr

from app.config import Settings

log = structlog.get_logger(__name__)

SmtpTls = Literal["none", "starttls", "tls"]

_DEFAULT_SMTP_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}
_UNREACHABLE_SMTP_ERRORS = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    OSError,
)
# Operator-fixable SMTP conditions: retrying after the fix delivers, so they are transient.
_OPERATOR_FIXABLE_SMTP_ERRORS = (
    aiosmtplib.SMTPAuthenticationError,
    aiosmtplib.SMTPSenderRefused,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPNotSupported,
)


class DeliveryFailed(Exception):
    """A message was not delivered. `transient`: the caller should retry later."""

    def __init__(
        self,
        reason: str,
        *,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.status = status  # the SMTP reply code or HTTP status, when there was one
        self.retry_after = retry_after  # seconds, when the provider said so


class EmailSender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmsSender(Protocol):
    async def send(self, *, to: str, body: str) -> None: ...


# --- SMTP -----------------------------------------------------------------------------------


class SmtpEmailSender:
    """Sends through an SMTP server; one connection per message (guest mail is low volume)."""

    def __init__(
        self,
        *,
        host: str,
        port: int | None = None,
        tls: SmtpTls = "none",
        username: str | None = None,
        password: SecretStr | None = None,
        timeout_seconds: float = 20.0,
    ) -> None:
        self._host = host
        self._port = port or _DEFAULT_SMTP_PORTS[tls]
        self._tls = tls
        self._username = username or None
        self._password = password
        self._timeout_seconds = timeout_seconds

    def __repr__(self) -> str:
        return f"SmtpEmailSender(host={self._host!r}, port={self._port}, tls={self._tls!r})"

    async def send(self, message: EmailMessage) -> None:
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password.get_secret_value() if self._password else None,
                use_tls=self._tls == "tls",
                # False, not None: "none" must not upgrade to STARTTLS behind the operator's back.
                start_tls=self._tls == "starttls",
                timeout=self._timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError) as error:
            raise _smtp_failure(error) from error
        if refused:
            # Some recipients accepted, some not: sending again would duplicate for the others.
            log.warning("delivery.smtp.partially_refused", refused=sorted(refused))
        log.info(
            "delivery.smtp.sent",
            to=str(message["To"]),
            message_id=str(message["Message-ID"]),
            host=self._host,
        )


def _smtp_failure(error: Exception) -> DeliveryFailed:
    if isinstance(error, _UNREACHABLE_SMTP_ERRORS):
        # Refused connections, timeouts, disconnects, TLS handshakes, a 421/554 greeting:
        # the server is the problem, not the message.
        return DeliveryFailed(
            f"SMTP server unreachable: {type(error).__name__}",
            transient=True,
            status=getattr(error, "code", None),
        )
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [recipient.code for recipient in error.recipients]
        permanent = any(500 <= code < 600 for code in codes)
        return DeliveryFailed(
            f"SMTP server refused the recipient ({', '.join(map(str, codes))})",
            transient=not permanent,
            status=max(codes, default=None),
        )
    if isinstance(error, _OPERATOR_FIXABLE_SMTP_ERRORS):
        status = getattr(error, "code", None)
        return DeliveryFailed(
            f"SMTP configuration problem: {type(error).__name__} {status or ''}".rstrip(),
            transient=True,
            status=status,
        )
    if isinstance(error, aiosmtplib.SMTPResponseException):
        # 4xx: "try again later"; a 5xx here refuses this recipient or message for good.
        return DeliveryFailed(
            f"SMTP server replied {error.code}",
            transient=not 500 <= error.code < 600,
            status=error.code,
        )
    return DeliveryFailed(f"SMTP failed: {type(error).__name__}", transient=True)


# --- Outbox -----------------------------------------------------------------------------------


class OutboxEmailSender:
    """Writes each email as an `.eml` file: what would have been sent, openable in a mail client."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return f"OutboxEmailSender(directory={str(self.directory)!r})"

    async def send(self, message: EmailMessage) -> None:
        message_id = str(message["Message-ID"] or f"<{uuid.uuid4().hex}@guestkey.local>")
        name = f"{_timestamp()}-{_safe_file_part(message_id)}.eml"
        path = await _write_atomically(self.directory, name, message.as_bytes())
        log.info(
            "delivery.outbox.email", path=str(path), to=str(message["To"]), message_id=message_id
        )


class OutboxSmsSender:
    """Writes each SMS as a `.txt` file (a `To:` line, a blank line, the body)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return f"OutboxSmsSender(directory={str(self.directory)!r})"

    async def send(self, *, to: str, body: str) -> None:
        name = f"{_timestamp()}-sms-{uuid.uuid4().hex}.txt"
        content = f"To: {to}\n\n{body}\n".encode()
        path = await _write_atomically(self.directory, name, content)
        log.info("delivery.outbox.sms", path=str(path), to=to)


def _timestamp() -> str:
    # Sorts by time in a plain directory listing.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _safe_file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip("<>"))[:120]


async def _write_atomically(directory: Path, name: str, content: bytes) -> Path:
    """Readers (people, tests, a watcher) never see half a message: write a temp file, rename."""
    try:
        return await asyncio.to_thread(_write_file_atomically, directory, name, content)
    except OSError as error:
        raise DeliveryFailed(
            f"cannot write to the outbox: {type(error).__name__}", transient=True
        ) from error


def _write_file_atomically(directory: Path, name: str, content: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


# --- Twilio -----------------------------------------------------------------------------------


class TwilioSmsSender:
    """Sends an SMS with Twilio's Messages API (a single form POST; no SDK needed)."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: SecretStr,
        from_number: str,
        endpoint: str = "https://api.twilio.com",
        timeout_seconds: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,  # tests pass a MockTransport
    ) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._from_number = from_number
        self._url = f"{endpoint.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._timeout_seconds = timeout_seconds
        self._transport = transport

    def __repr__(self) -> str:
        return f"TwilioSmsSender(account_sid={self._account_sid!r}, url={self._url!r})"

    async def send(self, *, to: str, body: str) -> None:
        try:
            async with httpx.AsyncClient(
                auth=httpx.BasicAuth(self._account_sid, self._auth_token.get_secret_value()),
                timeout=self._timeout_seconds,
                transport=self._transport,
            ) as client:
                response = await client.post(
                    self._url, data={"To": to, "From": self._from_number, "Body": body}
                )
        except httpx.HTTPError as error:
            raise DeliveryFailed(
                f"Twilio unreachable: {type(error).__name__}", transient=True
            ) from error
        if response.is_success:
            log.info("delivery.twilio.sent", to=to, message_sid=_json_field(response, "sid"))
            return
        raise _twilio_failure(response)


def _twilio_failure(response: httpx.Response) -> DeliveryFailed:
    status = response.status_code
    twilio_code = _json_field(response, "code")
    reason = f"Twilio replied {status}" + (f" (error {twilio_code})" if twilio_code else "")
    # 401/403: wrong credentials or a suspended account — an operator fixes it, then retries work.
    transient = status in (401, 403, 408, 429) or status >= 500
    return DeliveryFailed(
        reason, transient=transient, status=status, retry_after=_retry_after(response)
    )


def _json_field(response: httpx.Response, name: str) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    value = payload.get(name) if isinstance(payload, dict) else None
    return None if value is None else str(value)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


# --- Wiring -----------------------------------------------------------------------------------


def outbox_directory(settings: Settings) -> Path:
    """`GUESTKEY_OUTBOX_DIR`, else `<data dir>/outbox`."""
    return settings.outbox_dir or settings.data_dir / "outbox"


def build_email_sender(settings: Settings) -> EmailSender:
    if settings.smtp_host is None:
        return OutboxEmailSender(outbox_directory(settings))
    return SmtpEmailSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=settings.smtp_password,
        timeout_seconds=settings.smtp_timeout_seconds,
    )


def build_sms_sender(settings: Settings) -> SmsSender:
    if settings.sms_provider == "outbox":
        return OutboxSmsSender(outbox_directory(settings))
    account_sid, auth_token, from_number = (
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        settings.twilio_from,
    )
    if not account_sid or not auth_token or not from_number:
        raise ValueError(
            "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM must be set "
            "when SMS_PROVIDER=twilio"
        )
    return TwilioSmsSender(
        account_sid=account_sid,
        auth_token=auth_token,
        from_number=from_number,
        endpoint=settings.twilio_endpoint,
        timeout_seconds=settings.twilio_timeout_seconds,
    )
