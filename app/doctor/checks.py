"""`guestkey doctor`: every part of a deployment checked from the outside, one line each.

Each check answers ✓ or ✗ with what it saw and, on ✗, the fix. Checks never stop at the
first problem: an operator going live wants the whole list at once.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

import httpx

from app.config import SANDBOX_SEAM_API_KEY, Settings
from app.seam.client import SeamGateway, Workspace
from app.seam.errors import SeamError
from app.startup import seam_api_key_problem
from app.webhooks import subscription

DOCTOR_EVENT_TYPE = "guestkey.doctor_check"
HTTP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        fix = f" — fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{mark} {self.name}: {self.detail}{fix}"


@dataclass(frozen=True)
class DoctorOptions:
    webhook_url: str | None = None
    send_test_to: str | None = None


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


async def run_checks(
    settings: Settings, *, database_url: str | None, options: DoctorOptions
) -> list[Check]:
    """All checks, in the order an operator fixes things: configuration, database, keys,
    Seam, the webhook, mail, callbacks."""
    checks = [check_secrets(settings)]
    checks += await check_database(database_url)
    checks.append(await check_encryption_keys(settings, database_url))
    webhook_url = options.webhook_url or settings_webhook_url(settings)
    checks += await check_seam(settings, webhook_url)
    if not settings.in_process_fake_seam:
        checks.append(await check_round_trip(settings, webhook_url))
    checks.append(await check_mail(settings, send_test_to=options.send_test_to))
    checks.append(await check_callbacks(settings))
    return checks


async def check_seam(settings: Settings, webhook_url: str | None) -> list[Check]:
    """The Seam key and workspace, then guestkey's webhook there."""
    if problem := seam_api_key_problem(settings):
        return [failed("Seam", problem, "set SEAM_API_KEY to a key from Seam Console")]
    async with open_seam(settings) as seam:
        seam_check, workspace = await check_seam_key(settings, seam)
        if settings.in_process_fake_seam:
            webhook = passed(
                "webhook", "sandbox: the in-process fake Seam delivers to guestkey directly"
            )
            return [seam_check, webhook]
        if workspace is None:
            return [seam_check]
        return [seam_check, await check_webhook(settings, seam, webhook_url)]


def settings_webhook_url(settings: Settings) -> str | None:
    if not settings.public_url:
        return None
    return settings.public_url.rstrip("/") + subscription.WEBHOOK_PATH


def check_secrets(settings: Settings) -> Check:
    if settings.sandbox:
        return passed("configuration", "sandbox mode (no SEAM_API_KEY): the fake Seam, no secrets")
    missing = settings.missing_secrets
    if missing:
        return failed(
            "configuration",
            f"{', '.join(missing)} not set",
            "`guestkey seam connect --url https://HOST/webhooks/seam` prints the webhook secret; "
            "`guestkey keygen` makes an encryption key",
        )
    return passed("configuration", "SEAM_API_KEY, SEAM_WEBHOOK_SECRET and the encryption key set")


async def check_database(database_url: str | None) -> list[Check]:
    import psycopg

    from app.db import libpq_url
    from app.migrate import head_revision
    from app.startup import masked_url

    if database_url is None:
        return [failed("database", "no database", "set DATABASE_URL")]
    head = head_revision()
    try:
        async with await psycopg.AsyncConnection.connect(
            libpq_url(database_url), connect_timeout=5
        ) as connection:
            try:
                row = await (
                    await connection.execute("SELECT version_num FROM alembic_version")
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
    except psycopg.Error as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return [
            failed(
                "database",
                f"cannot reach {masked_url(database_url)}: {reason}",
                "check DATABASE_URL and that PostgreSQL accepts connections from here",
            )
        ]
    current = row[0] if row else None
    if current != head:
        return [
            failed(
                "database",
                f"reachable, schema at {current or 'no migration'}; guestkey needs {head}",
                "run `guestkey migrate`",
            )
        ]
    return [passed("database", f"reachable, schema at the newest migration ({head})")]


async def check_encryption_keys(settings: Settings, database_url: str | None) -> Check:
    """Every stored code must decrypt: a key dropped from GUESTKEY_ENCRYPTION_KEY too early
    makes codes unreadable, and it shows only when a guest asks for a resend."""
    import psycopg

    from app.crypto import InvalidToken, build_cipher
    from app.db import libpq_url

    name = "encryption keys"
    try:
        cipher = build_cipher(settings)
    except ValueError as error:
        return failed(name, str(error), "`guestkey keygen` makes a key")
    if database_url is None:
        return passed(name, "valid (no database to read codes from)")
    unreadable = total = 0
    try:
        async with await psycopg.AsyncConnection.connect(
            libpq_url(database_url), connect_timeout=5
        ) as connection:
            cursor = connection.cursor(name="doctor_codes")  # server-side: any number of rows
            await cursor.execute(
                "SELECT code_ciphertext FROM access_method WHERE code_ciphertext IS NOT NULL"
            )
            async for (ciphertext,) in cursor:
                total += 1
                try:
                    cipher.decrypt(bytes(ciphertext))
                except InvalidToken:
                    unreadable += 1
    except psycopg.Error:
        return passed(name, "valid (stored codes not readable: see the database line)")
    if unreadable:
        return failed(
            name,
            f"{unreadable} of {total} stored code(s) do not decrypt",
            "put the key they were written with back into GUESTKEY_ENCRYPTION_KEY (after the "
            "first), then run `guestkey reencrypt`",
        )
    return passed(name, f"valid; all {total} stored code(s) decrypt")


@contextlib.asynccontextmanager
async def open_seam(settings: Settings) -> AsyncIterator[SeamGateway]:
    """The Seam guestkey would talk to: the workspace of SEAM_API_KEY, a `guestkey fake-seam`
    at SEAM_ENDPOINT, or (sandbox) a fake Seam inside this process."""
    async with contextlib.AsyncExitStack() as stack:
        if settings.in_process_fake_seam:
            from app.seam.fake import FakeSeam

            fake = FakeSeam()
            stack.push_async_callback(fake.aclose)
            seam = SeamGateway.connect(
                api_key=SANDBOX_SEAM_API_KEY,
                endpoint="http://fake-seam.sandbox",
                transport=httpx.ASGITransport(fake.app),
            )
        else:
            api_key = SANDBOX_SEAM_API_KEY
            if settings.seam_api_key is not None and not settings.sandbox:
                api_key = settings.seam_api_key.get_secret_value()
            seam = SeamGateway.connect(
                api_key=api_key,
                endpoint=settings.seam_endpoint,
                timeout_seconds=settings.seam_timeout_seconds,
            )
        stack.push_async_callback(seam.aclose)
        yield seam


async def check_seam_key(settings: Settings, seam: SeamGateway) -> tuple[Check, Workspace | None]:
    name = "Seam"
    try:
        workspace = await seam.workspace()
    except SeamError as error:
        if error.status in (401, 403):
            return failed(
                name,
                "Seam rejected SEAM_API_KEY",
                "create an API key in Seam Console (Developer → API Keys) for the workspace "
                "your locks are in, and set SEAM_API_KEY to it",
            ), None
        return failed(
            name,
            f"cannot use Seam at {settings.seam_endpoint}: {error}",
            "check SEAM_ENDPOINT (default https://connect.getseam.com) and outbound HTTPS",
        ), None
    kind = "a sandbox workspace" if workspace.is_sandbox else "a production workspace"
    where = "the in-process fake Seam" if settings.in_process_fake_seam else "SEAM_API_KEY"
    return passed(
        name, f"{where} opens workspace “{workspace.name}” ({workspace.workspace_id}, {kind})"
    ), workspace


async def check_webhook(settings: Settings, seam: SeamGateway, webhook_url: str | None) -> Check:
    name = "webhook"
    connect = f"`guestkey seam connect --url {webhook_url or 'https://HOST/webhooks/seam'}`"
    if webhook_url is None:
        return failed(
            name,
            "no webhook URL to check",
            "set GUESTKEY_PUBLIC_URL (https://HOST) or pass --webhook-url",
        )
    if problem := subscription.webhook_url_problem(webhook_url):
        return failed(name, problem, "use guestkey's public https://HOST/webhooks/seam")
    try:
        webhook = await subscription.find_webhook(seam, url=webhook_url)
    except SeamError as error:
        return failed(name, f"cannot list Seam's webhooks: {error}", "see the Seam line")
    if webhook is None:
        return failed(name, f"no webhook at Seam for {webhook_url}", connect)
    if problem := subscription.event_types_problem(webhook):
        return failed(name, f"Seam's webhook for {webhook_url}: {problem}", connect)
    if webhook.secret is not None and webhook.secret not in settings.webhook_secrets:
        return failed(
            name,
            f"SEAM_WEBHOOK_SECRET is not the secret of Seam's webhook for {webhook_url}",
            f"set SEAM_WEBHOOK_SECRET to the secret {connect} prints",
        )
    return passed(
        name, f"registered at Seam for {webhook_url} with guestkey's event types; secret matches"
    )


async def check_round_trip(settings: Settings, webhook_url: str | None) -> Check:
    """A test event signed like Seam's, posted to the public URL: proves that URL reaches a
    running guestkey that holds the same secret. guestkey stores it as an ignored event."""
    from svix.webhooks import Webhook as SvixWebhook

    name = "webhook round trip"
    if webhook_url is None:
        return failed(name, "no webhook URL", "set GUESTKEY_PUBLIC_URL or pass --webhook-url")
    if not settings.webhook_secrets:
        return failed(name, "no SEAM_WEBHOOK_SECRET to sign with", "set SEAM_WEBHOOK_SECRET")
    message_id = f"msg_guestkey_doctor_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    body = json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": DOCTOR_EVENT_TYPE,
            "occurred_at": now.isoformat(),
            "created_at": now.isoformat(),
        }
    )
    signature = SvixWebhook(settings.webhook_secrets[0]).sign(message_id, now, body)
    headers = {
        "content-type": "application/json",
        "svix-id": message_id,
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": signature,
    }
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
            response = await client.post(webhook_url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return failed(
            name,
            f"cannot reach {webhook_url} ({type(error).__name__})",
            "`guestkey serve` must be running and reachable from the internet at that URL",
        )
    if response.status_code == 204:
        return passed(name, f"a signed test event to {webhook_url} was accepted")
    if response.status_code in (400, 401):
        return failed(
            name,
            f"{webhook_url} refused a correctly signed event ({response.status_code})",
            "the guestkey behind that URL runs with another SEAM_WEBHOOK_SECRET",
        )
    return failed(
        name,
        f"{webhook_url} answered {response.status_code}",
        "that URL must reach guestkey's /webhooks/seam (check the proxy's routes)",
    )


async def check_mail(settings: Settings, *, send_test_to: str | None) -> Check:
    import aiosmtplib

    from app.delivery.channels import outbox_directory

    name = "mail"
    if not settings.smtp_host:
        outbox = outbox_directory(settings)
        if settings.sandbox:
            return passed(name, f"no SMTP_HOST: guest emails are written to {outbox}")
        return failed(
            name,
            f"no SMTP_HOST: guest emails would be written to {outbox}, not sent",
            "set SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD, SMTP_TLS and MAIL_FROM",
        )
    smtp = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_tls == "tls",
        start_tls=settings.smtp_tls == "starttls",
        timeout=settings.smtp_timeout_seconds,
    )
    where = f"{settings.smtp_host}:{settings.smtp_port or 'default port'}"
    try:
        await smtp.connect()
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            await smtp.login(settings.smtp_username, password)
        if send_test_to:
            await smtp.send_message(_test_message(settings, send_test_to))
        await smtp.quit()
    except aiosmtplib.SMTPAuthenticationError:
        return failed(name, f"{where} refused the login", "check SMTP_USERNAME and SMTP_PASSWORD")
    except (aiosmtplib.SMTPException, OSError) as error:
        return failed(
            name,
            f"cannot use {where}: {type(error).__name__}: {error}",
            "check SMTP_HOST, SMTP_PORT and SMTP_TLS (none, starttls or tls)",
        )
    login = " and login" if settings.smtp_username else ""
    sent = f"; a test message went to {send_test_to}" if send_test_to else ""
    return passed(name, f"{where}: connect{login} ok{sent}")


def _test_message(settings: Settings, to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = "guestkey doctor: test message"
    message.set_content("guestkey can send email through this server.\n")
    return message


async def check_callbacks(settings: Settings) -> Check:
    name = "callbacks"
    url = settings.guestkey_callback_url
    if not url:
        return passed(name, "no GUESTKEY_CALLBACK_URL: no callbacks are sent")
    return await reachable(
        name,
        url,
        fix="GUESTKEY_CALLBACK_URL must be reachable from guestkey (check DNS, TLS, firewall)",
        request=lambda client: client.head(url),
    )


async def reachable(
    name: str,
    url: str,
    *,
    fix: str,
    request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
) -> Check:
    """Any HTTP answer means the URL is reachable; what it says to a HEAD is its business."""
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
            response = await request(client)
    except httpx.HTTPError as error:
        return failed(name, f"cannot reach {url} ({type(error).__name__})", fix)
    return passed(name, f"{url} reachable (HTTP {response.status_code})")
