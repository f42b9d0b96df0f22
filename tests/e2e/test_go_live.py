"""The go-live guide (docs/GO-LIVE.md), step by step, with `guestkey fake-seam` standing in for
the Seam workspace: keygen, seam connect, first client, serve, doctor, the first PUT, delivered."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Mailbox
from tests.e2e.processes import GUESTKEY, _clean_env, fake_seam_process, free_port, running
from tests.factories import reservation_body

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def guestkey(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GUESTKEY, *args],
        env={**_clean_env(), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_go_live_guide_ends_with_a_delivered_code(
    tmp_path: Path, e2e_database: str, mailbox: Mailbox
) -> None:
    guestkey_port, seam_port = free_port(), free_port()
    public_url = f"http://127.0.0.1:{guestkey_port}"
    webhook_url = f"{public_url}/webhooks/seam"
    with fake_seam_process(log_dir=tmp_path, port=seam_port, webhook_url=None) as fake_seam:
        # The Seam key, an encryption key, the database.
        env = {
            "SEAM_API_KEY": "seam_live_workspace_key",
            "SEAM_ENDPOINT": fake_seam.url,
            # `guestkey fake-seam` stands in for the workspace: said so, as DESIGN.md §9.1 asks.
            "GUESTKEY_ALLOW_FAKE_SEAM": "true",
            "DATABASE_URL": e2e_database,
            "GUESTKEY_PUBLIC_URL": public_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(mailbox.port),  # type: ignore[attr-defined]
            "MAIL_FROM": "Seaside Stays <keys@seaside.example>",
            "GUESTKEY_DATA_DIR": str(tmp_path / "data"),
        }
        keygen = guestkey("keygen", env=env, cwd=tmp_path)
        assert keygen.returncode == 0
        env["GUESTKEY_ENCRYPTION_KEY"] = keygen.stdout.strip()
        assert guestkey("migrate", env=env, cwd=tmp_path).returncode == 0

        # Register the webhook; its secret is the only thing on stdout.
        connect = guestkey("seam", "connect", "--url", webhook_url, env=env, cwd=tmp_path)
        assert connect.returncode == 0, connect.stderr
        secret = connect.stdout.strip()
        assert secret.startswith("whsec_")
        assert "created" in connect.stderr
        again = guestkey("seam", "connect", "--url", webhook_url, env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == secret
        assert "unchanged" in again.stderr
        registered = httpx.post(
            f"{fake_seam.url}/webhooks/list", headers={"Authorization": "Bearer seam_x"}
        ).json()["webhooks"]
        assert [webhook["url"] for webhook in registered] == [webhook_url]
        env["SEAM_WEBHOOK_SECRET"] = secret

        # Serve, then the doctor: every line ✓.
        with running(
            "guestkey",
            ["serve", "--port", str(guestkey_port)],
            env=env,
            log_dir=tmp_path,
            url=public_url,
            ready_path="/readyz",
            timeout=300,
        ):
            doctor = guestkey("doctor", env=env, cwd=tmp_path)
            assert doctor.returncode == 0, doctor.stdout + doctor.stderr
            lines = doctor.stdout.strip().splitlines()
            checks = [line for line in lines if line[:1] in "✓✗"]
            assert len(checks) >= 7 and all(line.startswith("✓") for line in checks), lines
            assert any("webhook round trip" in line for line in checks)

            # The booking system's client, its first PUT, then delivered.
            created = guestkey("clients", "create", "seaside-pms", env=env, cwd=tmp_path)
            assert created.returncode == 0, created.stderr
            api_key = created.stdout.strip().splitlines()[-1]
            api = httpx.Client(base_url=public_url, headers={"Authorization": f"Bearer {api_key}"})
            put = api.put("/v1/reservations/first-stay", json=reservation_body())
            assert put.status_code == 201, put.text
            deadline = time.monotonic() + 60
            reservation = put.json()
            while reservation["status"] != "delivered" and time.monotonic() < deadline:
                time.sleep(0.2)
                reservation = api.get("/v1/reservations/first-stay").json()
            assert reservation["status"] == "delivered", reservation
            assert [message["To"] for message in mailbox.messages] == ["ada@example.com"]
