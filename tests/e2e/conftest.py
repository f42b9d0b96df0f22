from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.conftest import Mailbox
from tests.database import create_database, drop_database
from tests.e2e.processes import Process, fake_seam_process, free_port, running

E2E_API_KEY = "gk_e2e_key_0123456789abcdef"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"guestkey-e2e-webhook-secret-32b!").decode()


@dataclass
class Stack:
    guestkey: Process
    fake_seam: Process
    database_url: str

    @property
    def processes(self) -> list[Process]:
        return [self.guestkey, self.fake_seam]


@pytest.fixture
def e2e_database(postgres_admin_url: str) -> Iterator[str]:
    url = create_database(postgres_admin_url, prefix="guestkey_e2e")
    yield url
    drop_database(postgres_admin_url, url)


@pytest.fixture
def stack(e2e_database: str, tmp_path: Path, mailbox: Mailbox) -> Iterator[Stack]:
    """`guestkey serve` and `guestkey fake-seam` as real processes, talking real HTTP."""
    guestkey_port, seam_port = free_port(), free_port()
    guestkey_url = f"http://127.0.0.1:{guestkey_port}"
    seam_url = f"http://127.0.0.1:{seam_port}"
    with (
        fake_seam_process(
            log_dir=tmp_path,
            port=seam_port,
            webhook_url=f"{guestkey_url}/webhooks/seam",
            webhook_secret=WEBHOOK_SECRET,
        ) as fake_seam,
        running(
            "guestkey",
            ["serve", "--port", str(guestkey_port)],
            env={
                "DATABASE_URL": e2e_database,
                "SEAM_API_KEY": "seam_e2e_key",
                "GUESTKEY_ALLOW_FAKE_SEAM": "true",
                "SEAM_ENDPOINT": seam_url,
                "SEAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "GUESTKEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "GUESTKEY_API_KEYS": f"e2e:{E2E_API_KEY}",
                "GUESTKEY_DATA_DIR": str(tmp_path / "data"),
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(mailbox.port),  # type: ignore[attr-defined]
                "MAIL_FROM": "Seaside Stays <keys@seaside.example>",
                **{k: v for k, v in os.environ.items() if k == "PATH"},
            },
            log_dir=tmp_path,
            url=guestkey_url,
            ready_path="/readyz",
        ) as guestkey,
    ):
        yield Stack(guestkey=guestkey, fake_seam=fake_seam, database_url=e2e_database)
