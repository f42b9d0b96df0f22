"""Keys rotated for good, copies that expire, codes kept out of the inbox, a guarded /metrics
and a lost grant that is not mistaken for a deleted one (DESIGN.md §9.1, §9.7, §9.8)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text, update

from app.crypto import CodeCipher
from app.db import utcnow
from app.delivery.models import Delivery
from app.installation.service import address_digest, reencrypt
from app.reconciler.flows import purge_expired
from app.reservations.models import AccessMethod, Reservation
from app.retention.service import ERASED_GRANT_NAME, ERASED_GUEST_NAME
from app.runtime import Runtime
from app.webhooks.models import SeamWebhook
from tests.conftest import make_retries_due, run_jobs, settle
from tests.factories import fail_next, put_reservation
from tests.webhooks.signing import seam_event, signed

GUESTKEY = str(Path(sys.executable).parent / "guestkey")
ADA = {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+14155550100"}


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    """No SMTP server: messages go to the outbox folder, as files (email and SMS)."""
    return {
        **{k: v for k, v in settings_overrides.items() if not k.startswith("smtp_")},
        "guestkey_metrics_token": "metrics-token-0123456789",
    }


def sandbox_key(runtime: Runtime) -> str:
    return (runtime.settings.data_dir / "encryption.key").read_text().strip()


async def code_of(client: httpx.AsyncClient, key: str = "bk-1") -> str:
    reservation = (await client.get(f"/v1/reservations/{key}")).json()
    code: str = reservation["access_methods"][0]["code"]
    return code


# --- reencrypt -----------------------------------------------------------------------------


async def test_reencrypt_waits_for_a_row_locked_by_another_transaction(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)
    code = await code_of(client)
    new_key = Fernet.generate_key().decode()
    rotated = CodeCipher([new_key, sandbox_key(runtime)])

    async with runtime.engine.connect() as other:
        await other.execute(text("SELECT * FROM access_method FOR UPDATE"))  # a worker's job
        async with runtime.sessionmaker() as session:
            running = asyncio.create_task(reencrypt(session, cipher=rotated))
            await asyncio.sleep(1.0)
            assert not running.done()  # waiting for the lock, not skipping the row
            await other.commit()
            result = await asyncio.wait_for(running, timeout=30)

    assert result.complete
    async with runtime.sessionmaker() as session:
        token = await session.scalar(select(AccessMethod.code_ciphertext))
    assert token is not None and CodeCipher([new_key]).decrypt(token) == code


async def test_a_code_no_key_opens_answers_null_with_a_warning_and_reencrypt_fails(
    client: httpx.AsyncClient, runtime: Runtime, clean_database: str
) -> None:
    await put_reservation(client, "bk-1")
    await put_reservation(client, "bk-2")
    await settle(runtime)
    lost_key = CodeCipher([Fernet.generate_key().decode()])  # a key dropped too early
    async with runtime.sessionmaker() as session:
        bk1 = await session.scalar(
            select(Reservation.id).where(Reservation.reservation_key == "bk-1")
        )
        await session.execute(
            update(AccessMethod)
            .where(AccessMethod.reservation_id == bk1)
            .values(code_ciphertext=lost_key.encrypt("12345678"))
        )
        await session.commit()

    fetched = await client.get("/v1/reservations/bk-1")
    assert fetched.status_code == 200
    assert fetched.json()["access_methods"][0]["code"] is None
    assert [w["code"] for w in fetched.json()["warnings"]] == ["code_unreadable"]
    page = await client.get("/v1/reservations")
    assert page.status_code == 200  # the other reservation on the page still shows its code
    codes = {
        item["reservation_key"]: item["access_methods"][0]["code"] for item in page.json()["items"]
    }
    assert codes["bk-1"] is None and codes["bk-2"]

    result = await asyncio.to_thread(
        subprocess.run,
        [GUESTKEY, "reencrypt"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("GUESTKEY_", "SEAM_"))},
            "DATABASE_URL": clean_database,
            "GUESTKEY_ENCRYPTION_KEY": f"{Fernet.generate_key().decode()},{sandbox_key(runtime)}",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "1 secret(s) open with none of the keys" in result.stderr


# --- retention reaches every copy ----------------------------------------------------------


async def test_the_purge_leaves_no_outbox_file_and_erases_the_guest_at_seam(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await put_reservation(client, "bk-1", guest={**ADA, "locale": "en"})
    grace = {"name": "Grace Hopper", "email": "grace@example.com", "locale": "en"}
    await put_reservation(client, "bk-2", guest=grace)
    await settle(runtime)
    outbox = runtime.settings.data_dir / "outbox"
    assert len(list(outbox.glob("*.eml"))) == 2 and len(list(outbox.glob("*.txt"))) == 1
    grant_id = (await client.get("/v1/reservations/bk-1")).json()["access_grant_id"]

    async with runtime.sessionmaker() as session:  # bk-1 ended long ago; bk-2 is kept
        await session.execute(
            update(Reservation)
            .where(Reservation.reservation_key == "bk-1")
            .values(ends_at=utcnow() - timedelta(days=40), starts_at=utcnow() - timedelta(days=45))
        )
        await session.commit()
    counts = await purge_expired(runtime)
    await settle(runtime)

    assert counts["reservations_erased"] == 1 and counts["outbox_files_erased"] == 2
    left = [path.read_bytes() for path in outbox.iterdir() if path.suffix in (".eml", ".txt")]
    assert len(left) == 1 and b"grace@example.com" in left[0]
    assert not any(b"ada@example.com" in content or b"+14155550100" in content for content in left)
    grant = fake_seam.state.grants[grant_id]
    assert grant.name == ERASED_GRANT_NAME
    identity = fake_seam.state.user_identities[grant.user_identity_id]
    assert identity.full_name == ERASED_GUEST_NAME
    assert identity.email_address is None and identity.phone_number is None
    kept = [i for i in fake_seam.state.user_identities.values() if i.email_address]
    assert [i.email_address for i in kept] == ["grace@example.com"]


async def test_a_returning_guests_identity_is_kept_while_a_stay_uses_it(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await put_reservation(client, "bk-1", guest={**ADA, "locale": "en"})
    await put_reservation(client, "bk-2", guest={**ADA, "locale": "en"})
    await settle(runtime)
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(Reservation)
            .where(Reservation.reservation_key == "bk-1")
            .values(ends_at=utcnow() - timedelta(days=40), starts_at=utcnow() - timedelta(days=45))
        )
        await session.commit()
    await purge_expired(runtime)
    await settle(runtime)
    identities = list(fake_seam.state.user_identities.values())
    assert [i.email_address for i in identities] == ["ada@example.com"]


async def test_delivery_dedupe_keys_hold_a_keyed_digest_not_a_plain_hash(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await put_reservation(client, "bk-1", guest={**ADA, "locale": "en"})
    await settle(runtime)
    async with runtime.sessionmaker() as session:
        keys = list(await session.scalars(select(Delivery.dedupe_key)))
    assert len(keys) == 2
    for address in (ADA["email"], ADA["phone"]):
        plain = hashlib.sha256(address.lower().encode()).hexdigest()
        assert not any(plain[:16] in key for key in keys)
        assert any(key.endswith(address_digest(runtime.address_key, address)) for key in keys)


def test_logs_mask_addresses_in_every_field_and_line() -> None:
    script = (
        "import logging, structlog\n"
        "from app.logs import configure_logging\n"
        "configure_logging()\n"
        "log = structlog.get_logger('t')\n"
        "log.info('delivery.smtp.sent', to='ada@example.com')\n"
        "log.warning('delivery.smtp.partially_refused', refused=['+14155550100'])\n"
        "logging.getLogger('aiosmtplib').warning('refused <ada@example.com>')\n"
        "try:\n"
        "    raise ValueError('no mailbox ada@example.com')\n"
        "except ValueError:\n"
        "    log.exception('delivery.failed')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "ada@example.com" not in result.stderr and "+14155550100" not in result.stderr
    assert result.stderr.count("a***@example.com") == 3
    assert "+1******0100" in result.stderr


# --- the inbox -----------------------------------------------------------------------------


async def test_a_code_at_any_depth_is_redacted_in_the_inbox(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    event = seam_event(
        "access_method.issued",
        access_method_id="am-1",
        code="83420117",
        access_method={"code": "83420117", "backup": [{"code": "55120987"}]},
    )
    body, headers = signed(event)
    assert (await client.post("/webhooks/seam", content=body, headers=headers)).status_code == 204
    async with runtime.sessionmaker() as session:
        payload = await session.scalar(select(SeamWebhook.payload))
    dump = str(payload)
    assert "83420117" not in dump and "55120987" not in dump
    assert payload is not None and payload["access_method"]["backup"][0]["code"] == "[redacted]"


@pytest.mark.parametrize(
    "body",
    [
        b"code=83420117",  # not JSON
        b'[{"code": "83420117"}]',  # an array
        b'{"event_id": "e\\u0000", "code": "83420117"}',  # a NUL escape
        b'{"note": "no event_type", "code": "83420117"}',  # JSON, not a Seam event
    ],
)
async def test_a_rejected_body_keeps_only_its_digest_and_length(
    client: httpx.AsyncClient, runtime: Runtime, body: bytes
) -> None:
    signed_body, headers = signed(body)
    response = await client.post("/webhooks/seam", content=signed_body, headers=headers)
    assert response.status_code == 204
    async with runtime.engine.connect() as connection:
        row = (await connection.execute(text("SELECT * FROM seam_webhook"))).mappings().one()
    assert row["outcome"] == "rejected"
    assert "83420117" not in str(dict(row))
    assert row["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert row["body_length"] == len(body)


# --- /metrics ------------------------------------------------------------------------------


async def test_metrics_need_the_token_and_count_reservations_at_most_once_a_minute(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    plain = httpx.AsyncClient(transport=client._transport, base_url="http://guestkey.test")
    async with plain:
        assert (await plain.get("/metrics")).status_code == 401
        wrong = await plain.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        bearer = {"Authorization": "Bearer metrics-token-0123456789"}
        first = await plain.get("/metrics", headers=bearer)
        assert first.status_code == 200
        assert 'guestkey_reservations{status="pending"} 0.0' in first.text
        await put_reservation(client, "bk-1")
        cached = await plain.get("/metrics", headers=bearer)
        assert 'guestkey_reservations{status="pending"} 0.0' in cached.text
        runtime.reservation_counts_at -= 61  # a minute later
        fresh = await plain.get("/metrics", headers=bearer)
        assert 'guestkey_reservations{status="pending"} 1.0' in fresh.text


# --- a grant guestkey made that Seam does not know -----------------------------------------


async def test_a_missing_grant_at_cancellation_is_an_error_and_is_retried(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)
    await fail_next(
        fake_seam,
        count=1,
        status=404,
        error_type="access_grant_not_found",
        endpoint="/access_grants/delete",
    )
    assert (await client.delete("/v1/reservations/bk-1")).status_code == 200
    await run_jobs(runtime)

    timeline = (await client.get("/v1/reservations/bk-1/events")).json()["events"]
    kinds = [event["kind"] for event in timeline]
    assert "grant_missing" in kinds and "grant_deleted" not in kinds
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["access_grant_id"] is not None  # still guestkey's to delete
    assert "Seam has no access grant" in reservation["last_error"]
    async with runtime.sessionmaker() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs "
                "WHERE status = 'todo' AND task_name = 'reservations.sync'"
            )
        )
    assert waiting == 1  # retried
    metrics = (
        await client.get("/metrics", headers={"Authorization": "Bearer metrics-token-0123456789"})
    ).text
    missing = [line for line in metrics.splitlines() if line.startswith("guestkey_seam_grants_m")]
    assert missing and float(missing[0].split()[-1]) >= 1

    await make_retries_due(runtime)  # Seam answers again (the workspace was fixed)
    await settle(runtime)
    timeline = (await client.get("/v1/reservations/bk-1/events")).json()["events"]
    kinds = [event["kind"] for event in timeline]
    assert kinds.count("grant_missing") == 1 and "grant_deleted" in kinds
    assert (await client.get("/v1/reservations/bk-1")).json()["access_grant_id"] is None
