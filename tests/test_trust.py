"""API clients, data protection and observability."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from app.crypto import CodeCipher, InvalidToken
from app.db import create_engine, utcnow
from app.installation.service import reencrypt
from app.reconciler.flows import purge_expired
from app.reservations.models import AccessMethod
from app.runtime import Runtime
from app.webhooks.models import SeamWebhook
from tests.conftest import settle
from tests.factories import put_reservation, reservation_body
from tests.webhooks.signing import seam_event, signed

GUESTKEY = str(Path(sys.executable).parent / "guestkey")


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUESTKEY_", "SEAM_"))}
    return subprocess.run(
        [GUESTKEY, *args],
        env={**env, "DATABASE_URL": database_url, "GUESTKEY_LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli_clients_create_list_and_revoke(app: Any, clean_database: str) -> None:
    created = cli(clean_database, "clients", "create", "acme-pms")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("gk_live_") and len(key) >= 48
    assert key not in created.stderr

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://guestkey.test",
        headers={"Authorization": f"Bearer {key}"},
    ) as acme:
        assert (await acme.put("/v1/reservations/a-1", json=reservation_body())).status_code == 201
        listed = cli(clean_database, "clients", "list")
        assert "acme-pms\tactive" in listed.stdout
        assert key not in listed.stdout  # shown once, at creation
        assert cli(clean_database, "clients", "create", "acme-pms").returncode == 2  # exists
        assert cli(clean_database, "clients", "revoke", "acme-pms").returncode == 0
        assert (await acme.get("/v1/reservations/a-1")).status_code == 401
    async with app.state.runtime.engine.connect() as connection:
        stored = await connection.scalar(text("SELECT key_digest FROM api_key"))
    assert stored != key and len(stored) == 64  # a digest, not the key


async def test_another_client_can_neither_resend_nor_cancel(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)
    assert (await other_client.post("/v1/reservations/bk-1/resend")).status_code == 404
    assert (await other_client.delete("/v1/reservations/bk-1")).status_code == 404
    assert (await client.get("/v1/reservations/bk-1")).json()["status"] == "delivered"


async def test_codes_survive_a_key_rotation(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)
    code = (await client.get("/v1/reservations/bk-1")).json()["access_methods"][0]["code"]
    new_key = Fernet.generate_key().decode()
    # The new key goes first; the old one stays so existing codes still decrypt.
    old_key = (runtime.settings.data_dir / "encryption.key").read_text().strip()
    rotated = CodeCipher([new_key, old_key])
    async with runtime.sessionmaker() as session:
        result = await reencrypt(session, cipher=rotated)
    assert result.complete and result.rotated >= 1
    only_new = CodeCipher([new_key])
    async with runtime.sessionmaker() as session:
        ciphertext = await session.scalar(select(AccessMethod.code_ciphertext))
    assert ciphertext is not None
    assert only_new.decrypt(ciphertext) == code
    with pytest.raises(InvalidToken):  # the old key alone no longer opens it
        CodeCipher([old_key]).decrypt(ciphertext)


async def test_guest_data_and_codes_are_erased_after_retention(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)
    before = (await client.get("/v1/reservations/bk-1")).json()
    ends_at = before["ends_at"]
    from datetime import datetime

    long_after = (
        datetime.fromisoformat(ends_at) + runtime.settings.guestkey_retention + timedelta(minutes=1)
    )
    assert (await purge_expired(runtime, now=long_after - timedelta(days=1)))[
        "reservations_erased"
    ] == 0
    assert (await purge_expired(runtime, now=long_after))["reservations_erased"] == 1
    after = (await client.get("/v1/reservations/bk-1")).json()
    assert after["guest"] == {"name": "(erased)", "email": None, "phone": None, "locale": "en"}
    assert after["access_methods"][0]["code"] is None
    assert after["deliveries"][0]["to"] == "(erased)"
    async with runtime.engine.connect() as connection:
        dump = await connection.scalar(
            text("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM reservation_event) t")
        )
    assert "ada@example.com" not in dump


async def test_inbox_rows_are_kept_30_days_then_pruned(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    body, headers = signed(seam_event())
    await client.post("/webhooks/seam", content=body, headers=headers)
    assert (await purge_expired(runtime, now=utcnow() + timedelta(days=29)))["webhooks_pruned"] == 0
    assert (await purge_expired(runtime, now=utcnow() + timedelta(days=31)))["webhooks_pruned"] == 1


async def test_a_code_inside_a_webhook_is_not_kept_in_the_inbox(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    event = seam_event("access_method.issued", access_method_id="am-1", code="834201")
    body, headers = signed(event)
    assert (await client.post("/webhooks/seam", content=body, headers=headers)).status_code == 204
    async with runtime.sessionmaker() as session:
        payload = await session.scalar(select(SeamWebhook.payload))
    assert payload is not None and payload["code"] == "[redacted]"
    assert payload["event_id"] == event["event_id"]


async def test_metrics_count_jobs_webhooks_deliveries_and_statuses(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await put_reservation(client, "bk-1")
    await settle(runtime)
    body, headers = signed(seam_event())
    await client.post("/webhooks/seam", content=body, headers=headers)
    await client.post("/webhooks/seam", content=body, headers=headers)
    await client.post(
        "/webhooks/seam", content=body, headers={**headers, "svix-signature": "v1,AAAA"}
    )
    metrics = (await client.get("/metrics")).text
    assert 'guestkey_jobs_total{outcome="succeeded",task="reservations.sync"}' in metrics
    assert 'guestkey_webhooks_total{outcome="duplicate",reason=""}' in metrics
    assert 'guestkey_webhooks_total{outcome="rejected",reason="bad_signature"}' in metrics
    assert 'guestkey_deliveries_total{channel="email",outcome="sent"}' in metrics
    assert 'guestkey_reservations{status="delivered"} 1.0' in metrics
    assert (
        'guestkey_seam_call_duration_seconds_count{endpoint="access_grants.create",outcome="ok"}'
        in metrics
    )
    code = (await client.get("/v1/reservations/bk-1")).json()["access_methods"][0]["code"]
    assert code not in metrics.replace(".", " ").split()


async def test_readyz_is_503_while_the_database_is_unreachable(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    working = runtime.engine
    runtime.engine = create_engine("postgresql://nobody@127.0.0.1:9/nowhere", pool_size=1)
    try:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert "nobody" not in response.text
    finally:
        await runtime.engine.dispose()
        runtime.engine = working
    assert (await client.get("/readyz")).status_code == 200
