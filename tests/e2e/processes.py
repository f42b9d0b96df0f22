"""guestkey and the fake Seam as real processes on loopback ports, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

VENV_BIN = Path(sys.executable).parent
GUESTKEY = str(VENV_BIN / "guestkey")


T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None], *, timeout: float = 30, interval: float = 0.1, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or predicate}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


# Every guestkey process a test started, so the suite's log guard (tests/conftest.py) reads
# their logs too.
STARTED: list[Process] = []


def _clean_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GUESTKEY_", "SEAM_", "SMTP_"))
        and name not in ("DATABASE_URL", "MAIL_FROM")
    }


@contextmanager
def running(
    name: str,
    args: list[str],
    *,
    env: dict[str, str],
    log_dir: Path,
    url: str,
    ready_path: str,
    timeout: float = 60,
) -> Iterator[Process]:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            [GUESTKEY, *args],
            env={**_clean_env(), **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=log_dir,
        )
    process = Process(name, popen, log_path, url)
    STARTED.append(process)
    try:
        wait_until_ready(process, ready_path, timeout)
        yield process
    finally:
        process.stop()


def wait_until_ready(process: Process, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited early:\n{process.log()[-4000:]}")
        try:
            if httpx.get(process.url + path, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} not ready after {timeout}s:\n{process.log()[-4000:]}")


@contextmanager
def fake_seam_process(
    *,
    log_dir: Path,
    port: int,
    webhook_url: str | None,
    webhook_secret: str | None = None,
    timeout: float = 60,
) -> Iterator[Process]:
    """`guestkey fake-seam` on a loopback port, signing its webhooks to `webhook_url` (or to
    the webhook registered with `webhooks/create`, when None)."""
    webhook = ["--webhook-url", webhook_url] if webhook_url else []
    if webhook_secret:
        webhook += ["--webhook-secret", webhook_secret]
    with running(
        "fake-seam",
        ["fake-seam", "--port", str(port), *webhook],
        env={},
        log_dir=log_dir,
        url=f"http://127.0.0.1:{port}",
        ready_path="/_fake/health",
        timeout=timeout,
    ) as process:
        yield process
