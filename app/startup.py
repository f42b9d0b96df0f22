"""Start-up checks: each problem an operator fixes in the environment becomes one line that
names the variable or the unreachable thing, and exit status 2 — never a traceback.

`guestkey serve` runs them before the migrations, so a busy port or a bad key is reported
before anything is written.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

    from app.config import Settings

EXIT_STARTUP = 2


class StartupError(Exception):
    """A configuration or environment problem; its lines are printed as they are, exit 2."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def load_settings() -> Settings:
    """`Settings()` from the environment, with invalid or missing values as a StartupError."""
    from pydantic import ValidationError

    from app.config import Settings

    try:
        return Settings()
    except ValidationError as error:
        raise StartupError(*settings_problems(error)) from None


def check_secrets(settings: Settings) -> None:
    """Outside sandbox mode, serving needs Seam's key, the webhook secret and the encryption
    key, over HTTPS; sandbox mode is asked for, and never with a Seam key (DESIGN.md §9.1)."""
    if problems := settings.startup_problems():
        raise StartupError(*problems)


def seam_api_key_problem(settings: Settings) -> str | None:
    """Seam's keys start with `seam_`; the SDK refuses anything else before any call."""
    if settings.sandbox or settings.seam_api_key is None:
        return None
    if not settings.seam_api_key.get_secret_value().startswith("seam_"):
        return "SEAM_API_KEY is not a Seam API key (those start with seam_)"
    return None


def check_seam_api_key(settings: Settings) -> None:
    if problem := seam_api_key_problem(settings):
        raise StartupError(problem)


def settings_problems(error: ValidationError) -> list[str]:
    """One line per problem, naming the environment variable rather than the Python field."""
    from app.config import Settings

    lines: list[str] = []
    for problem in error.errors(include_url=False):
        message = str(problem["msg"]).removeprefix("Value error, ")
        location = [str(part) for part in problem["loc"]]
        if not location:  # a check across variables: its message names them
            lines.append(message)
            continue
        field = Settings.model_fields.get(location[0])
        variable = (field.alias if field is not None and field.alias else location[0]).upper()
        lines.append(f"{variable}: {message}")
    return lines


def check_encryption_keys(settings: Settings) -> None:
    from app.crypto import build_cipher

    try:
        build_cipher(settings)
    except ValueError as error:
        raise StartupError(f"GUESTKEY_ENCRYPTION_KEY: {error}") from None


def check_port_free(host: str, port: int) -> None:
    """Bind the address once: a port in use is reported before migrations and start-up work."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"port {port} on {host} is already in use: stop what listens there, "
                    "or choose another with --port"
                ) from None
            raise StartupError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def check_database_reachable(url: str, *, timeout_seconds: int = 5) -> None:
    import psycopg

    from app.db import libpq_url

    try:
        with psycopg.connect(libpq_url(url), connect_timeout=timeout_seconds):
            pass
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StartupError(
            f"DATABASE_URL: cannot reach the database at {masked_url(url)}: {reason}"
        ) from None


def masked_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class DataDirectoryLock:
    """`guestkey serve` with the embedded PostgreSQL owns its data directory: a second one would
    share (and, on exit, stop) the first one's database. The lock is a `flock` held for the life
    of the process, so the kernel releases it however the process ends."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "serve.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a+")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            file.close()
            raise StartupError(
                f"GUESTKEY_DATA_DIR: {self.path.parent} is in use by another guestkey serve "
                f"(pid {holder}); stop it first, or give this one its own GUESTKEY_DATA_DIR"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(str(os.getpid()))
        file.flush()
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def forget_dead_database_handles(pgdata: Path) -> list[int]:
    """The embedded PostgreSQL stops when the last process that joined it exits; it counts them
    in a file. A process killed without clean-up stays listed, and the server would then run
    forever: drop the pids of processes that no longer exist. Returns the dropped pids."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return []
    try:
        pids: list[Any] = json.loads(handles.read_text())
    except ValueError:
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
    return [pid for pid in pids if pid not in alive]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
