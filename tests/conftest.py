from __future__ import annotations

import email.policy
import os
from collections.abc import AsyncIterator, Iterator, MutableMapping
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import structlog
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from app.migrate import upgrade_to_head
from app.runtime import Runtime
from app.worker.app import jobs, worker_options
from tests.database import create_database, drop_database, server_url, truncate_all
from tests.e2e.processes import STARTED, free_port
from tests.webhooks.signing import SECRET as WEBHOOK_SECRET

# The developer's own environment must not leak into the tests' settings.
for name in list(os.environ):
    if name.startswith(("GUESTKEY_", "SEAM_", "SMTP_")) or name in ("DATABASE_URL", "MAIL_FROM"):
        del os.environ[name]

API_KEYS = {"alpha": "key-alpha-0123456789", "beta": "key-beta-0123456789"}

TRACEBACK = "Traceback (most recent call last)"
# Processes whose log is not guestkey's (the fake Seam prints the tracebacks of requests
# whose client went away, which some fault tests cause on purpose).
NOT_GUESTKEY = frozenset({"fake-seam"})


@pytest.fixture(autouse=True)
def no_traceback_in_service_log(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """A traceback in guestkey's log means a bug (DESIGN.md §9.6): expected conditions are
    one line without one. Fails a test whose log (structlog, stdlib logging, or a guestkey
    process it started) holds one, unless it is marked `provokes_traceback`."""
    entries: list[MutableMapping[str, Any]] = []

    def spy(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        entries.append(dict(event_dict))
        return event_dict

    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[spy, *processors])
    processes_before = len(STARTED)
    try:
        yield
    finally:
        structlog.configure(processors=processors)
    if request.node.get_closest_marker("provokes_traceback"):
        return
    found = [
        f"{record.name}: {record.getMessage()[:200]}"
        for record in caplog.get_records("setup") + caplog.get_records("call")
        if record.exc_info or record.exc_text or TRACEBACK in record.getMessage()
    ]
    found += [
        str(entry.get("event"))
        for entry in entries
        if entry.get("exc_info") or "exception" in entry or TRACEBACK in str(entry)
    ]
    found += [
        f"process {process.name}"
        for process in STARTED[processes_before:]
        if process.name not in NOT_GUESTKEY and TRACEBACK in process.log()
    ]
    if found:
        pytest.fail(f"traceback in the service log: {found}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return server_url()


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    url = create_database(postgres_admin_url)
    upgrade_to_head(url)
    yield url
    drop_database(postgres_admin_url, url)


@pytest.fixture
def clean_database(database_url: str) -> str:
    truncate_all(database_url)
    return database_url


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "GUESTKEY_SANDBOX": True,  # the in-process fake Seam, unless a test says otherwise
        "guestkey_api_keys": ",".join(f"{client}:{key}" for client, key in API_KEYS.items()),
        "GUESTKEY_LOG_FORMAT": "console",
    }
    values.update(overrides)
    return Settings(**values)


class Mailbox:
    """A real SMTP server (aiosmtpd) on a loopback port, keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse_with: str | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_with:
            return self.refuse_with
        self.messages.append(
            cast(
                EmailMessage, BytesParser(policy=email.policy.default).parsebytes(envelope.content)
            )
        )
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] == address]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port  # type: ignore[attr-defined]
    yield box
    controller.stop()


@pytest.fixture
def settings_overrides(mailbox: Mailbox, tmp_path: Path) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": mailbox.port,  # type: ignore[attr-defined]
        "seam_webhook_secret": WEBHOOK_SECRET,
        "GUESTKEY_DATA_DIR": tmp_path / "data",
    }


@pytest.fixture
async def app(clean_database: str, settings_overrides: dict[str, Any]) -> AsyncIterator[FastAPI]:
    """guestkey with the in-process fake Seam and no background worker: tests run jobs."""
    application = create_app(
        make_settings(**settings_overrides), database_url=clean_database, run_worker=False
    )
    async with application.router.lifespan_context(application):
        # Tests count the Seam calls they cause: not the start's workspace check.
        application.state.runtime.fake_seam.state.calls.clear()
        yield application


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
def fake_seam(runtime: Runtime) -> Any:
    return runtime.fake_seam


def api_client(app: FastAPI, client_name: str) -> httpx.AsyncClient:
    """An HTTP client of the app, calling as the booking system `client_name`."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://guestkey.test",
        headers={"Authorization": f"Bearer {API_KEYS[client_name]}"},
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app, "alpha") as http:
        yield http


@pytest.fixture
async def other_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app, "beta") as http:
        yield http


async def run_jobs(runtime: Runtime) -> None:
    """Run every job that is due, until none is left. The periodic reconciler's queue is left
    out: tests call the reconciler themselves, when they mean to."""
    options = worker_options(runtime, concurrency=1, wait=False)
    await jobs.run_worker_async(**options, queues=["default"])  # type: ignore[arg-type]


async def make_retries_due(runtime: Runtime) -> int:
    """Bring jobs scheduled for a later retry forward to now; returns how many."""
    async with runtime.engine.begin() as connection:
        result = await connection.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() "
                "WHERE status = 'todo' AND scheduled_at > now()"
            )
        )
        return int(result.rowcount)


async def job_counts(runtime: Runtime) -> dict[str, int]:
    async with runtime.engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT status::text, count(*) FROM procrastinate_jobs "
                "WHERE queue_name = 'default' GROUP BY status"
            )
        )
        return {status: count for status, count in rows}


async def settle(runtime: Runtime, rounds: int = 20) -> None:
    """Let the fake Seam's timers and webhooks and guestkey's due jobs run until all is quiet."""
    fake = runtime.fake_seam
    for _ in range(rounds):
        if fake is not None:
            await fake.drain()
        await run_jobs(runtime)
        if fake is None or await fake.drain(within=0.2):
            due = await due_job_count(runtime)
            if due == 0:
                return
    raise AssertionError("jobs and webhooks did not settle")


async def due_job_count(runtime: Runtime) -> int:
    async with runtime.engine.connect() as connection:
        return int(
            await connection.scalar(
                text(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                    "AND queue_name = 'default' AND (scheduled_at IS NULL OR scheduled_at <= now())"
                )
            )
            or 0
        )
