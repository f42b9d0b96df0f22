"""Sandbox only when asked, secrets required, the database's Seam workspace kept, URLs that
cross a network over HTTPS (DESIGN.md §9.1, §9.7)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog.testing
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from app.config import SANDBOX_API_KEY, ConfigurationError, Settings
from app.installation.models import Installation
from app.main import create_app
from app.runtime import open_runtime
from app.seam.fake import FakeSeam
from tests.conftest import make_settings
from tests.factories import reservation_body
from tests.http_stack import app, fake_seam_server
from tests.webhooks.signing import SECRET as WEBHOOK_SECRET

__all__ = ["app", "fake_seam_server"]  # production-shaped: the fake Seam as an HTTP server

GUESTKEY = str(Path(sys.executable).parent / "guestkey")
SECRETS = ("SEAM_API_KEY", "SEAM_WEBHOOK_SECRET", "GUESTKEY_ENCRYPTION_KEY")
ENCRYPTION_KEY = Fernet.generate_key().decode()


def guestkey(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GUESTKEY_", "SEAM_", "SMTP_")) and name != "DATABASE_URL"
    }
    return subprocess.run(
        [GUESTKEY, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


# --- sandbox is something you ask for ------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_start_without_secrets_exits_2_naming_every_missing_variable(
    command: str, tmp_path: Path
) -> None:
    """A secret that did not mount no longer turns production into a sandbox."""
    result = guestkey(command, env={"GUESTKEY_DATA_DIR": str(tmp_path)})
    assert_one_line_refusal(result, *SECRETS)
    assert not (tmp_path / "encryption.key").exists()  # nothing started


def test_serve_sandbox_with_a_seam_api_key_is_refused(tmp_path: Path) -> None:
    result = guestkey(
        "serve",
        "--sandbox",
        env={"SEAM_API_KEY": "seam_live_key", "GUESTKEY_DATA_DIR": str(tmp_path)},
    )
    assert_one_line_refusal(result, "GUESTKEY_SANDBOX", "SEAM_API_KEY")


@pytest.mark.parametrize("missing", SECRETS)
def test_each_missing_secret_is_named(missing: str) -> None:
    values = {
        "seam_api_key": "seam_live_key",
        "seam_webhook_secret": WEBHOOK_SECRET,
        "guestkey_encryption_key": ENCRYPTION_KEY,
    }
    del values[missing.lower()]
    problems = Settings(**values).startup_problems()
    assert len(problems) == 1
    assert missing in problems[0]
    assert all(other not in problems[0] for other in SECRETS if other != missing)


def test_sandbox_with_a_seam_api_key_is_refused() -> None:
    (problem,) = Settings(GUESTKEY_SANDBOX=True, seam_api_key="seam_live_key").startup_problems()
    assert "GUESTKEY_SANDBOX" in problem and "SEAM_API_KEY" in problem
    assert Settings(GUESTKEY_SANDBOX=True).startup_problems() == []


def test_the_sandbox_key_is_never_accepted_outside_sandbox() -> None:
    production = {
        "seam_api_key": "seam_live_key",
        "seam_webhook_secret": WEBHOOK_SECRET,
        "guestkey_encryption_key": ENCRYPTION_KEY,
    }
    assert Settings(**production).startup_problems() == []
    assert SANDBOX_API_KEY not in Settings(**production).env_api_keys
    smuggled = Settings(**production, guestkey_api_keys=f"pms:{SANDBOX_API_KEY}")
    assert any(SANDBOX_API_KEY in problem for problem in smuggled.startup_problems())
    assert Settings(GUESTKEY_SANDBOX=True).env_api_keys == {SANDBOX_API_KEY: "sandbox"}


async def test_a_production_app_answers_401_to_the_sandbox_key(app: Any) -> None:
    """`app` here is production-shaped (a Seam key, the fake as an HTTP server, allowed by
    GUESTKEY_ALLOW_FAKE_SEAM): the published key is just a wrong key."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://guestkey.test",
        headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
    ) as stranger:
        response = await stranger.put("/v1/reservations/x-1", json=reservation_body())
    assert response.status_code == 401


async def test_an_app_that_cannot_start_says_why(clean_database: str, tmp_path: Path) -> None:
    application = create_app(Settings(GUESTKEY_DATA_DIR=tmp_path), database_url=clean_database)
    with pytest.raises(ConfigurationError, match="SEAM_API_KEY"):
        async with application.router.lifespan_context(application):
            pass


# --- the database's Seam workspace ---------------------------------------------------------


def _production_settings(seam_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(
        GUESTKEY_SANDBOX=False,
        seam_api_key="seam_live_key",
        seam_endpoint=seam_url,
        seam_webhook_secret=WEBHOOK_SECRET,
        guestkey_encryption_key=ENCRYPTION_KEY,
        GUESTKEY_DATA_DIR=tmp_path,
        **overrides,
    )


async def test_production_refuses_the_fake_seam_unless_allowed(
    clean_database: str, fake_seam_server: tuple[FakeSeam, str], tmp_path: Path
) -> None:
    _, seam_url = fake_seam_server
    with pytest.raises(ConfigurationError, match="GUESTKEY_ALLOW_FAKE_SEAM"):
        async with open_runtime(
            _production_settings(seam_url, tmp_path), database_url=clean_database
        ):
            pass
    allowed = _production_settings(seam_url, tmp_path, GUESTKEY_ALLOW_FAKE_SEAM=True)
    async with (
        open_runtime(allowed, database_url=clean_database) as runtime,
        runtime.sessionmaker() as session,
    ):
        assert await session.scalar(select(Installation.seam_workspace_id)) is not None


async def test_another_workspace_is_refused_unless_the_change_is_asked_for(
    clean_database: str, fake_seam_server: tuple[FakeSeam, str], tmp_path: Path
) -> None:
    _, seam_url = fake_seam_server
    settings = _production_settings(seam_url, tmp_path, GUESTKEY_ALLOW_FAKE_SEAM=True)
    async with (
        open_runtime(settings, database_url=clean_database) as runtime,
        runtime.sessionmaker() as session,
    ):
        fake_workspace = await session.scalar(select(Installation.seam_workspace_id))
        # As if this database had been used with another workspace before.
        await session.execute(
            update(Installation).values(
                seam_workspace_id="0d6c1d38-0000-4000-8000-000000000001",
                seam_workspace_name="Seaside Stays (production)",
            )
        )
        await session.commit()
    with pytest.raises(ConfigurationError, match="Seaside Stays") as refused:
        async with open_runtime(settings, database_url=clean_database):
            pass
    assert "GUESTKEY_ALLOW_WORKSPACE_CHANGE" in str(refused.value)
    adopting = _production_settings(
        seam_url, tmp_path, GUESTKEY_ALLOW_FAKE_SEAM=True, GUESTKEY_ALLOW_WORKSPACE_CHANGE=True
    )
    async with (
        open_runtime(adopting, database_url=clean_database) as runtime,
        runtime.sessionmaker() as session,
    ):
        assert await session.scalar(select(Installation.seam_workspace_id)) == fake_workspace


async def test_serve_against_the_fake_seam_exits_2_and_says_why(
    clean_database: str, fake_seam_server: tuple[FakeSeam, str], tmp_path: Path
) -> None:
    _, seam_url = fake_seam_server
    env = {
        "DATABASE_URL": clean_database,
        "SEAM_API_KEY": "seam_live_key",
        "SEAM_ENDPOINT": seam_url,
        "SEAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GUESTKEY_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "GUESTKEY_DATA_DIR": str(tmp_path),
    }
    # In a thread: the fake Seam serves from this test's event loop.
    result = await asyncio.to_thread(guestkey, "serve", "--port", "1", env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after the migration's own lines
    assert last.startswith("guestkey: ") and "GUESTKEY_ALLOW_FAKE_SEAM" in last


# --- HTTPS, unless local -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "variable", "value", "refused"),
    [
        ("seam_endpoint", "SEAM_ENDPOINT", "http://connect.getseam.com", True),
        ("seam_endpoint", "SEAM_ENDPOINT", "http://localhost:8090", False),
        ("seam_endpoint", "SEAM_ENDPOINT", "http://[::1]:8090", False),
        ("guestkey_callback_url", "GUESTKEY_CALLBACK_URL", "http://pms.example.com/hook", True),
        ("guestkey_callback_url", "GUESTKEY_CALLBACK_URL", "http://127.0.0.1:9000/hook", False),
        ("guestkey_callback_url", "GUESTKEY_CALLBACK_URL", "https://pms.example.com/h", False),
        ("twilio_endpoint", "TWILIO_ENDPOINT", "http://api.twilio.com", True),
    ],
)
def test_urls_that_cross_a_network_must_be_https(
    field: str, variable: str, value: str, refused: bool
) -> None:
    settings = Settings(
        seam_api_key="seam_live_key",
        seam_webhook_secret=WEBHOOK_SECRET,
        guestkey_encryption_key=ENCRYPTION_KEY,
        guestkey_callback_secret=WEBHOOK_SECRET,
        sms_provider="twilio",
        **{field: value},
    )
    problems = [problem for problem in settings.startup_problems() if variable in problem]
    assert bool(problems) == refused, settings.startup_problems()


def test_smtp_in_clear_to_another_host_is_flagged_and_local_is_not() -> None:
    assert Settings(smtp_host="smtp.example.com", smtp_tls="none").smtp_in_clear
    assert not Settings(smtp_host="smtp.example.com", smtp_tls="starttls").smtp_in_clear
    assert not Settings(smtp_host="127.0.0.1", smtp_tls="none").smtp_in_clear


async def test_a_start_with_smtp_in_clear_to_another_host_warns(
    clean_database: str, tmp_path: Path
) -> None:
    settings = make_settings(
        GUESTKEY_DATA_DIR=tmp_path, smtp_host="smtp.example.com", smtp_tls="none"
    )
    with structlog.testing.capture_logs() as logs:
        async with open_runtime(settings, database_url=clean_database):
            pass
    assert [entry for entry in logs if entry["event"] == "delivery.smtp.no_tls"]
