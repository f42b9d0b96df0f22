"""`make run` on a bare machine: no DATABASE_URL, no SEAM_API_KEY, no SMTP. guestkey starts
its embedded PostgreSQL and the in-process fake Seam, and the guest's message lands in the
outbox folder."""

from __future__ import annotations

import email.policy
import time
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest

from app.config import SANDBOX_API_KEY
from tests.e2e.processes import free_port, running
from tests.factories import mentions_code, reservation_body

pytestmark = pytest.mark.e2e


def test_sandbox_mode_ends_with_a_message_in_the_outbox(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    with running(
        "guestkey-sandbox",
        ["serve", "--port", str(port)],
        env={"GUESTKEY_DATA_DIR": str(data_dir), "GUESTKEY_SANDBOX": "true"},
        log_dir=tmp_path,
        url=url,
        ready_path="/readyz",
        timeout=120,
    ) as guestkey:
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"})
        assert api.put("/v1/reservations/demo-1", json=reservation_body()).status_code == 201
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reservation = api.get("/v1/reservations/demo-1").json()
            if reservation["status"] == "delivered":
                break
            time.sleep(0.2)
        assert reservation["status"] == "delivered", reservation
        code = reservation["access_methods"][0]["code"]
        messages = list((data_dir / "outbox").glob("*.eml"))
        assert len(messages) == 1
        message = BytesParser(policy=email.policy.default).parsebytes(messages[0].read_bytes())
        assert message["To"] == "ada@example.com"
        assert code in message.get_body(preferencelist=("plain",)).get_content()
        guestkey.stop()
        log = guestkey.log()
    assert "db.embedded.started" in log
    assert "delivery.outbox.email" in log
    assert not mentions_code(log, code)
