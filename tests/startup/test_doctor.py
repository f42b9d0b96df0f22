"""`guestkey doctor`: all ✓ against the sandbox, and each problem of a broken configuration
named on its own line with its fix."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from app.config import Settings
from app.doctor.checks import (
    DoctorOptions,
    check_encryption_keys,
    check_seam_key,
    check_webhook,
    run_checks,
)
from app.runtime import Runtime
from app.seam.client import SeamGateway
from app.seam.fake import FakeSeam
from app.webhooks.events import ACTED_ON_EVENTS, HANDLED_EVENTS
from app.webhooks.subscription import connect_webhook
from tests.conftest import Mailbox
from tests.database import create_database, drop_database
from tests.e2e.processes import GUESTKEY, _clean_env, free_port
from tests.factories import delivered_reservation, fail_next

WEBHOOK_URL = "https://guestkey.example/webhooks/seam"


def gateway_of(fake: FakeSeam, api_key: str = "seam_live_key") -> SeamGateway:
    return SeamGateway.connect(
        api_key=api_key, endpoint="http://fake-seam", transport=httpx.ASGITransport(fake.app)
    )


async def test_doctor_passes_every_check_in_sandbox_mode(
    tmp_path: Path, clean_database: str
) -> None:
    database_url = clean_database  # no row an earlier test wrote under another key
    done = subprocess.run(
        [GUESTKEY, "doctor"],
        env={
            **_clean_env(),
            "GUESTKEY_SANDBOX": "true",
            "DATABASE_URL": database_url,
            "GUESTKEY_DATA_DIR": str(tmp_path),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "all checks passed"
    checks = lines[:-1]
    assert len(checks) == 7 and all(line.startswith("✓ ") for line in checks), lines
    assert any("fake workspace" in line for line in checks)


async def test_doctor_names_each_problem_of_a_broken_configuration(
    tmp_path: Path, postgres_admin_url: str
) -> None:
    unmigrated = create_database(postgres_admin_url, prefix="guestkey_doctor")
    closed = free_port()
    settings = Settings(
        seam_api_key="seam_live_key",
        seam_endpoint=f"http://127.0.0.1:{closed}",
        guestkey_encryption_key="not-a-key",
        smtp_host="127.0.0.1",
        smtp_port=closed,
        guestkey_callback_url=f"http://127.0.0.1:{closed}/callbacks",
        guestkey_callback_secret="whsec_dGVzdA==",
        GUESTKEY_PUBLIC_URL=f"http://127.0.0.1:{closed}",
        GUESTKEY_DATA_DIR=tmp_path,
    )
    try:
        checks = await run_checks(settings, database_url=unmigrated, options=DoctorOptions())
    finally:
        drop_database(postgres_admin_url, unmigrated)
    failures = {check.name: check for check in checks if not check.ok}
    assert set(failures) == {
        "configuration",
        "database",
        "encryption keys",
        "Seam",
        "webhook round trip",
        "mail",
        "callbacks",
    }, [check.line() for check in checks]
    assert "SEAM_WEBHOOK_SECRET" in failures["configuration"].detail
    assert failures["database"].fix == "run `guestkey migrate`"
    assert "keygen" in (failures["encryption keys"].fix or "")
    assert "SEAM_ENDPOINT" in (failures["Seam"].fix or "")
    assert "SEAM_WEBHOOK_SECRET" in failures["webhook round trip"].detail
    assert f"127.0.0.1:{closed}" in failures["mail"].detail
    assert failures["callbacks"].line().startswith("✗ callbacks: cannot reach")


async def test_doctor_says_when_seam_rejects_the_key() -> None:
    fake = FakeSeam()
    seam = gateway_of(fake)
    await fail_next(fake, endpoint="/workspaces/get", status=401, error_type="unauthorized")
    try:
        check, workspace = await check_seam_key(Settings(), seam)
    finally:
        await seam.aclose()
        await fake.aclose()
    assert workspace is None
    assert check.line().startswith("✗ Seam: Seam rejected SEAM_API_KEY — fix: create an API key")


async def test_doctor_says_when_the_key_is_not_a_seam_key(tmp_path: Path) -> None:
    settings = Settings(
        seam_api_key="sk_live_not_seam",
        seam_endpoint="http://127.0.0.1:1",
        GUESTKEY_DATA_DIR=tmp_path,
    )
    checks = await run_checks(settings, database_url=None, options=DoctorOptions())
    seam = next(check for check in checks if check.name == "Seam")
    assert not seam.ok and "SEAM_API_KEY is not a Seam API key" in seam.detail


async def test_doctor_checks_the_webhook_url_event_types_and_secret() -> None:
    fake = FakeSeam()
    seam = gateway_of(fake)
    settings: dict[str, Any] = {"seam_api_key": "seam_live_key", "guestkey_encryption_key": "k"}
    try:
        missing = await check_webhook(
            Settings(**settings, seam_webhook_secret="whsec_x"), seam, WEBHOOK_URL
        )
        connected = await connect_webhook(seam, url=WEBHOOK_URL)
        secret = connected.webhook.secret
        assert secret is not None
        other_secret = await check_webhook(
            Settings(**settings, seam_webhook_secret="whsec_other"), seam, WEBHOOK_URL
        )
        good = await check_webhook(
            Settings(**settings, seam_webhook_secret=secret), seam, WEBHOOK_URL
        )
        # A webhook registered by an earlier guestkey, without the door list's events.
        await seam.update_webhook_event_types(
            connected.webhook.webhook_id, event_types=sorted(HANDLED_EVENTS)
        )
        without_door_events = await check_webhook(
            Settings(**settings, seam_webhook_secret=secret), seam, WEBHOOK_URL
        )
        await seam.update_webhook_event_types(
            connected.webhook.webhook_id, event_types=["access_method.issued"]
        )
        narrowed = await check_webhook(
            Settings(**settings, seam_webhook_secret=secret), seam, WEBHOOK_URL
        )
        reconnected = await connect_webhook(seam, url=WEBHOOK_URL)
        webhooks = await seam.list_webhooks()
    finally:
        await seam.aclose()
        await fake.aclose()
    assert not missing.ok and f"seam connect --url {WEBHOOK_URL}" in (missing.fix or "")
    assert not other_secret.ok and "SEAM_WEBHOOK_SECRET is not the secret" in other_secret.detail
    assert good.ok, good.line()
    assert set(connected.webhook.event_types) == ACTED_ON_EVENTS
    assert not without_door_events.ok and "device.disconnected" in without_door_events.detail
    assert not narrowed.ok and "access_grant.deleted" in narrowed.detail
    assert reconnected.outcome == "updated" and reconnected.webhook.secret == secret
    assert len(webhooks) == 1 and "access_grant.deleted" in webhooks[0].event_types


async def test_doctor_finds_stored_codes_the_keys_cannot_decrypt(
    client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    await delivered_reservation(client, runtime)
    settings = runtime.settings
    readable = await check_encryption_keys(settings, runtime.database_url)
    rotated_away = settings.model_copy(
        update={"guestkey_encryption_key": Fernet.generate_key().decode()}
    )
    rotated_away_too_early = await check_encryption_keys(
        Settings(
            GUESTKEY_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            GUESTKEY_DATA_DIR=settings.data_dir,
        ),
        runtime.database_url,
    )
    assert readable.ok and "all 1 stored code(s) decrypt" in readable.detail
    assert rotated_away is not None
    assert not rotated_away_too_early.ok
    assert "1 of 1 stored code(s) do not decrypt" in rotated_away_too_early.detail
