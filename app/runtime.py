"""Everything a guestkey process holds open: database, jobs, Seam. Built once at start-up."""

from __future__ import annotations

import base64
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.clients.service import env_key_digests
from app.config import SANDBOX_SEAM_API_KEY, ConfigurationError, Settings
from app.crypto import CodeCipher, build_cipher
from app.db import create_engine, create_sessionmaker, resolve_database_url
from app.delivery.channels import EmailSender, SmsSender, build_email_sender, build_sms_sender
from app.installation.service import address_key, check_workspace, installation
from app.seam.client import SeamGateway
from app.seam.errors import SeamError
from app.webhooks.service import Inbox
from app.webhooks.verify import WebhookVerifier
from app.worker.app import open_jobs

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    settings: Settings
    database_url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    seam: SeamGateway
    webhook_verifier: WebhookVerifier
    inbox: Inbox
    cipher: CodeCipher
    email_sender: EmailSender
    sms_sender: SmsSender
    env_key_digests: dict[str, uuid.UUID] = field(default_factory=dict)
    fake_seam: Any = None
    address_key: bytes = b""
    # When /metrics last counted the reservations (time.monotonic()).
    reservation_counts_at: float = float("-inf")


def _sandbox_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    database_url: str | None = None,
    webhook_target: Any = None,
    worker_concurrency: int = 0,
) -> AsyncIterator[Runtime]:
    """Open the database, the jobs app and the Seam client.

    `webhook_target` is guestkey's own ASGI app: in sandbox mode the in-process fake Seam
    delivers its signed webhooks to it directly.
    """
    problems = settings.startup_problems()
    if problems:
        raise ConfigurationError("; ".join(problems))
    if settings.smtp_in_clear:
        log.warning(
            "delivery.smtp.no_tls",
            host=settings.smtp_host,
            hint="guests' codes cross the network in clear: set SMTP_TLS=starttls or tls",
        )
    cipher = build_cipher(settings)  # fail fast on a bad key, before anything opens
    url = database_url or resolve_database_url(settings.database_url, settings.data_dir)
    engine = create_engine(url, pool_size=settings.database_pool_size)
    webhook_secrets = settings.webhook_secrets
    if not webhook_secrets and settings.sandbox:  # production requires the secret
        webhook_secrets = [_sandbox_webhook_secret()]
        if not settings.in_process_fake_seam:
            log.warning("webhooks.sandbox_secret", hint="set SEAM_WEBHOOK_SECRET to the fake's")
    fake_seam = None
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        await stack.enter_async_context(open_jobs(url, max_size=max(2, worker_concurrency + 3)))
        if settings.in_process_fake_seam:
            from app.seam.fake import FakeSeam

            fake_seam = FakeSeam(
                webhook_url="http://guestkey.sandbox/webhooks/seam" if webhook_target else None,
                webhook_secret=webhook_secrets[0],
                webhook_transport=httpx.ASGITransport(webhook_target) if webhook_target else None,
            )
            stack.push_async_callback(fake_seam.aclose)
            seam = SeamGateway.connect(
                api_key=SANDBOX_SEAM_API_KEY,
                endpoint="http://fake-seam.sandbox",
                transport=httpx.ASGITransport(fake_seam.app),
            )
            log.info("seam.sandbox", mode="in-process fake Seam")
        else:
            api_key = (
                SANDBOX_SEAM_API_KEY
                if settings.sandbox or settings.seam_api_key is None
                else settings.seam_api_key.get_secret_value()
            )
            seam = SeamGateway.connect(
                api_key=api_key,
                endpoint=settings.seam_endpoint,
                timeout_seconds=settings.seam_timeout_seconds,
                max_connections=settings.seam_max_connections,
            )
            if settings.sandbox:
                log.info("seam.sandbox", mode="fake Seam", endpoint=settings.seam_endpoint)
        stack.push_async_callback(seam.aclose)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            digests = await env_key_digests(session, env_keys=settings.env_api_keys)
            key = address_key(await installation(session, cipher=cipher), cipher=cipher)
            await session.commit()
        # Services that store address digests read the key from their session.
        sessionmaker.configure(info={"address_key": key})
        await _check_workspace(seam, sessionmaker, settings)
        yield Runtime(
            settings=settings,
            database_url=url,
            engine=engine,
            sessionmaker=sessionmaker,
            seam=seam,
            webhook_verifier=WebhookVerifier(webhook_secrets),
            inbox=Inbox(engine, sessionmaker),
            cipher=cipher,
            email_sender=build_email_sender(settings),
            sms_sender=build_sms_sender(settings),
            env_key_digests=digests,
            fake_seam=fake_seam,
            address_key=key,
        )


async def _check_workspace(
    seam: SeamGateway, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """DESIGN.md §9.1: a database stays with its Seam workspace. Seam being unreachable at start
    does not stop guestkey (its work waits for Seam anyway); the next start checks again."""
    try:
        workspace = await seam.workspace()
    except SeamError as error:
        log.warning("seam.workspace_unchecked", error=str(error))
        return
    async with sessionmaker() as session:
        await check_workspace(session, workspace=workspace, settings=settings)
        await session.commit()
