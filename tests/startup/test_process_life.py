"""`guestkey serve` as a process: start-up problems are one line and exit 2, SIGTERM stops
the embedded PostgreSQL, and a data directory serves one `guestkey serve` at a time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.e2e.processes import GUESTKEY, _clean_env, free_port, running, wait_for

VALID_KEY = Fernet.generate_key().decode()
WEBHOOK_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5"


def run_guestkey(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> tuple[int, str]:
    done = subprocess.run(
        [GUESTKEY, *args],
        env={**_clean_env(), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stderr


def assert_one_line_startup_error(returncode: int, stderr: str, *needles: str) -> None:
    assert returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_secrets_are_named_in_one_line(tmp_path: Path) -> None:
    returncode, stderr = run_guestkey(
        "serve", "--port", str(free_port()), env={"SEAM_API_KEY": "seam_x"}, cwd=tmp_path
    )
    assert_one_line_startup_error(
        returncode, stderr, "SEAM_WEBHOOK_SECRET", "GUESTKEY_ENCRYPTION_KEY"
    )


def test_an_invalid_setting_names_its_variable(tmp_path: Path) -> None:
    returncode, stderr = run_guestkey(
        "serve", "--port", str(free_port()), env={"SMTP_TLS": "sometimes"}, cwd=tmp_path
    )
    assert_one_line_startup_error(returncode, stderr, "SMTP_TLS:")


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    returncode, stderr = run_guestkey(
        "serve",
        "--port",
        str(free_port()),
        env={
            "SEAM_API_KEY": "seam_x",
            "SEAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GUESTKEY_ENCRYPTION_KEY": VALID_KEY,
            "DATABASE_URL": "postgresql://guestkey:hunter2@127.0.0.1:1/guestkey",
        },
        cwd=tmp_path,
    )
    assert_one_line_startup_error(returncode, stderr, "DATABASE_URL", "127.0.0.1:1")
    assert "hunter2" not in stderr


def test_a_bad_encryption_key_is_reported_before_the_database_is_touched(tmp_path: Path) -> None:
    returncode, stderr = run_guestkey(
        "serve",
        "--port",
        str(free_port()),
        env={
            "SEAM_API_KEY": "seam_x",
            "SEAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GUESTKEY_ENCRYPTION_KEY": "not-a-fernet-key",
            "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
        },
        cwd=tmp_path,
    )
    assert_one_line_startup_error(returncode, stderr, "GUESTKEY_ENCRYPTION_KEY", "keygen")


def test_a_busy_port_is_reported_before_migrations(tmp_path: Path, database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        returncode, stderr = run_guestkey(
            "serve",
            "--port",
            str(port),
            env={"DATABASE_URL": database_url, "GUESTKEY_SANDBOX": "true"},
            cwd=tmp_path,
        )
    assert_one_line_startup_error(returncode, stderr, f"port {port}", "--port")


def test_help_and_version_are_quick_and_quiet(tmp_path: Path) -> None:
    done = subprocess.run(
        [GUESTKEY, "serve", "--help"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert "(default: 8000)" in done.stdout and "(default: 127.0.0.1)" in done.stdout
    assert done.stderr == ""
    version = subprocess.run(
        [GUESTKEY, "--version"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert version.stdout.startswith("guestkey 0.")
    # `--help` answers from the standard library alone: none of the heavy imports ran.
    probe = subprocess.run(
        [
            str(Path(GUESTKEY).parent / "python"),
            "-c",
            "import sys, app.cli; app.cli.build_parser();"
            "print(','.join(sorted({m.split('.')[0] for m in sys.modules})))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    loaded = set(probe.stdout.strip().split(","))
    assert not loaded & {"fastapi", "sqlalchemy", "pydantic", "structlog", "uvicorn", "seam"}


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_sigterm_stops_the_embedded_postgres_and_a_second_serve_is_refused(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    env = {"GUESTKEY_DATA_DIR": str(data_dir), "GUESTKEY_SANDBOX": "true"}
    with running(
        "guestkey",
        ["serve", "--port", str(port)],
        env=env,
        log_dir=tmp_path,
        url=f"http://127.0.0.1:{port}",
        ready_path="/readyz",
        timeout=300,
    ) as guestkey:
        postmaster_pid = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        returncode, stderr = run_guestkey(
            "serve", "--port", str(free_port()), env=env, cwd=tmp_path
        )
        assert_one_line_startup_error(returncode, stderr, "GUESTKEY_DATA_DIR", "in use")

        guestkey.popen.send_signal(signal.SIGTERM)
        assert guestkey.popen.wait(60) == 0
        started = next(line for line in guestkey.log().splitlines() if "guestkey.serve" in line)
    assert f"http://127.0.0.1:{port}" in started
    assert "gk_sandbox_key" in started and str(data_dir / "outbox") in started
    wait_for(lambda: not _alive(postmaster_pid), timeout=30, what="postgres stopped")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_logs_are_console_lines_on_a_terminal_and_json_elsewhere_unless_asked() -> None:
    from app.logs import log_format_for

    assert log_format_for(_Stream(tty=True), None) == "console"
    assert log_format_for(_Stream(tty=False), None) == "json"
    assert log_format_for(_Stream(tty=True), "json") == "json"
    assert log_format_for(_Stream(tty=False), "console") == "console"
