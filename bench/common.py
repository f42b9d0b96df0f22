"""What every benchmark shares: result rows, databases, processes, the SMTP sink, wrk."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from cryptography.fernet import Fernet

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")

API_KEY = "gk_bench_key_0123456789abcdef0123"
API_CLIENT = "bench"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"guestkey-bench-webhook-secret-32").decode()
DEVICE_IDS = ["52246fe3-a87c-527d-a1f0-11ea7711d1b1", "102f4bbf-8eb7-5267-9934-b01ac0abe323"]


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    """One line of the final table. `ratio` is figure/reference (or as the benchmark defines)."""

    benchmark: str
    figure: str
    reference: str = "-"
    ratio: float | None = None
    target: str = "-"
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


# --- databases -----------------------------------------------------------------------------


def database_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@contextmanager
def scratch_database(label: str) -> Iterator[str]:
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scalar(url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(sql, params or None).fetchone()
        return None if row is None else row[0]


def postgres_version() -> str:
    return str(scalar(ADMIN_URL, "SHOW server_version"))


# --- processes -----------------------------------------------------------------------------


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

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(25)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def _clean_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GUESTKEY_", "SEAM_", "SMTP_"))
        and name not in ("DATABASE_URL", "MAIL_FROM")
    }


LOG_DIR = Path(tempfile.mkdtemp(prefix="guestkey-bench-"))


@contextmanager
def running(
    name: str, argv: list[str], *, port: int, env: dict[str, str], ready_path: str
) -> Iterator[Process]:
    """A server process, ready once `ready_path` answers 200."""
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(url + ready_path, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    with started(name, argv, env=env, log_name=f"{name}-{port}", url=url, ready=ready) as process:
        yield process


def guestkey_command(root: Path = REPO_ROOT) -> tuple[list[str], dict[str, str]]:
    """`guestkey` as the checkout at `root` runs it (argv and env): the bench measures the code
    of the checkout it runs from (or a baseline's), not whichever checkout the virtualenv's
    `guestkey` script was installed from."""
    code = "import sys; from app.cli import main; main(sys.argv[1:])"
    return [sys.executable, "-c", code], {"PYTHONPATH": str(root)}


@contextmanager
def started(
    name: str,
    argv: list[str],
    *,
    env: dict[str, str],
    log_name: str,
    url: str,
    ready: Callable[[], bool],
) -> Iterator[Process]:
    """Start `argv` with its output in LOG_DIR, wait up to 60 s for `ready`, stop it after."""
    log_path = LOG_DIR / f"{log_name}.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            argv,
            env={**_clean_env(), **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=LOG_DIR,
        )
    process = Process(name, popen, log_path, url)
    try:
        deadline = time.monotonic() + 60
        while not ready():
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{process.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after 60 s:\n{process.log_tail()}")
            time.sleep(0.1)
        yield process
    finally:
        process.stop()


def guestkey_env(url: str, *, seam_url: str, smtp_port: int | None = None) -> dict[str, str]:
    env = {
        "DATABASE_URL": url,
        "SEAM_API_KEY": "seam_x",
        "GUESTKEY_ALLOW_FAKE_SEAM": "true",
        "SEAM_ENDPOINT": seam_url,
        "SEAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GUESTKEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "GUESTKEY_API_KEYS": f"{API_CLIENT}:{API_KEY}",
        "GUESTKEY_DATA_DIR": str(LOG_DIR / "data"),
        "GUESTKEY_LOG_LEVEL": os.environ.get("BENCH_GUESTKEY_LOG_LEVEL", "info"),
    }
    if smtp_port is not None:
        env |= {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "MAIL_FROM": "Bench Stays <keys@bench.example>",
        }
    return env


@contextmanager
def guestkey_serve(
    url: str,
    *,
    seam_url: str = "http://127.0.0.1:9",
    smtp_port: int | None = None,
    worker: bool = True,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    root: Path = REPO_ROOT,
    name: str | None = None,
) -> Iterator[Process]:
    """`env`: a `guestkey_env` shared with a `guestkey_worker` (same encryption key).
    `root`: the checkout whose code runs (a baseline's, for one)."""
    port = port or free_port()
    command, command_env = guestkey_command(root)
    argv = [*command, "serve", "--port", str(port)]
    if not worker:
        argv.append("--no-worker")
    env = (env or guestkey_env(url, seam_url=seam_url, smtp_port=smtp_port)) | (extra_env or {})
    name = name or ("guestkey" if worker else "guestkey-api")
    with running(name, argv, port=port, env=env | command_env, ready_path="/readyz") as process:
        yield process


@contextmanager
def guestkey_worker(env: dict[str, str]) -> Iterator[Process]:
    """`guestkey worker` (no HTTP port): ready once it logs that it started."""
    log_name = f"guestkey-worker-{time.monotonic_ns()}"

    def ready() -> bool:
        return "guestkey.worker" in (LOG_DIR / f"{log_name}.log").read_text(errors="replace")

    command, command_env = guestkey_command()
    argv = [*command, "worker"]
    env = env | command_env
    with started("guestkey-worker", argv, env=env, log_name=log_name, url="", ready=ready) as p:
        yield p


@contextmanager
def fake_seam(webhook_url: str) -> Iterator[Process]:
    port = free_port()
    command, command_env = guestkey_command()
    argv = [
        *command,
        "fake-seam",
        "--port",
        str(port),
        "--webhook-url",
        webhook_url,
        "--webhook-secret",
        WEBHOOK_SECRET,
    ]
    with running(
        "fake-seam", argv, port=port, env=command_env, ready_path="/_fake/health"
    ) as process:
        yield process


@contextmanager
def reference_app(
    module: str, url: str, *, port: int | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[Process]:
    """A reference app (bench/reference_*.py), served exactly as `guestkey serve` serves."""
    port = port or free_port()
    argv = [sys.executable, "-m", f"bench.{module}", "--port", str(port)]
    env = {
        "DATABASE_URL": url,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "API_KEY": API_KEY,
        "PYTHONPATH": str(REPO_ROOT),
        **(extra_env or {}),
    }
    with running(module, argv, port=port, env=env, ready_path="/readyz") as process:
        yield process


# --- a baseline checkout ---------------------------------------------------------------

BASELINE_COMMIT = os.environ.get("BENCH_BASELINE_COMMIT", "441735e")


@dataclass
class Baseline:
    """guestkey as it was at `commit`: `root` its checkout, or None and `why` it is missing."""

    commit: str
    root: Path | None
    why: str = ""


@contextmanager
def baseline_checkout(commit: str = BASELINE_COMMIT) -> Iterator[Baseline]:
    """A temporary git worktree of `commit` (BENCH_BASELINE_COMMIT), removed afterwards, whose
    `guestkey` the bench can run as `today's` reference in the same run."""
    git = shutil.which("git")
    if git is None:
        yield Baseline(commit, None, "git is not installed")
        return

    def run_git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [git, "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False
        )

    found = run_git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    if found.returncode != 0:
        yield Baseline(commit, None, f"commit {commit} is not in {REPO_ROOT}'s git repository")
        return
    full = found.stdout.strip()
    scratch = Path(tempfile.mkdtemp(prefix="guestkey-baseline-"))
    root = scratch / "guestkey"
    added = run_git("worktree", "add", "--detach", str(root), full)
    if added.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        yield Baseline(commit, None, f"git worktree add failed: {added.stderr.strip()}")
        return
    try:
        yield Baseline(full[:9], root)
    finally:
        run_git("worktree", "remove", "--force", str(root))
        shutil.rmtree(scratch, ignore_errors=True)
        run_git("worktree", "prune")


# --- CPU ---------------------------------------------------------------------------------


def _postgres_database(title: str) -> str | None:
    """The database of a PostgreSQL client backend, from its process title
    (`postgres: 15/main: user database 127.0.0.1(5432) idle`); None for the server's own
    processes (checkpointer, WAL writer, background writer...), which work for every database."""
    words = title.split()
    for index, word in enumerate(words):
        if word == "[local]" or re.fullmatch(r"[0-9a-fA-F.:]+\(\d+\)", word):
            return words[index - 1] if index >= 1 else ""
    return None


class CpuMeter:
    """User + system CPU seconds spent by groups of processes between `start` and `stop`:
    named processes (with their children), this process (the load generator and the SMTP
    sink), and PostgreSQL — its backends serving `databases`, plus the server's own processes
    (WAL writer, checkpointer...), but not the backends of other databases on the same server.

    Sampled every SAMPLE_SECONDS in a thread, so a process that ends before `stop` (a backend
    of a pool's overflow connection) counts up to its last sample."""

    SAMPLE_SECONDS = 0.5

    def __init__(self, processes: dict[str, list[int]], databases: list[str]) -> None:
        self._roots = processes
        self._databases = {url.rsplit("/", 1)[1] for url in databases}
        self._first: dict[int, tuple[str, float]] = {}  # pid: (group, CPU seconds at first sight)
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = False

    def _groups(self) -> Iterator[tuple[str, psutil.Process]]:
        for group, pids in self._roots.items():
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    root = psutil.Process(pid)
                    yield group, root
                    for child in root.children(recursive=True):
                        yield group, child
        yield "bench (client + SMTP)", psutil.Process()
        for process in psutil.process_iter(["name", "cmdline"]):
            if process.info["name"] not in ("postgres", "postmaster"):
                continue
            database = _postgres_database(" ".join(process.info["cmdline"] or []))
            if database is None or database in self._databases:
                yield "PostgreSQL", process

    def _sample(self) -> None:
        for group, process in self._groups():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                seconds = float(times.user + times.system)
                # A process first seen after `start` began after it: all its CPU counts.
                self._first.setdefault(process.pid, (group, seconds if not self._started else 0.0))
                self._last[process.pid] = seconds

    def _run(self) -> None:
        while not self._stop.wait(self.SAMPLE_SECONDS):
            self._sample()

    def start(self) -> CpuMeter:
        self._sample()
        self._started = True
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """CPU seconds per group since `start`."""
        self._stop.set()
        self._thread.join()
        self._sample()
        spent: dict[str, float] = dict.fromkeys([*self._roots, "PostgreSQL"], 0.0)
        spent["bench (client + SMTP)"] = 0.0
        for pid, (group, first) in self._first.items():
            spent[group] += max(0.0, self._last[pid] - first)
        return spent


# --- SMTP sink -----------------------------------------------------------------------------


class Mailbox:
    """A real SMTP server (aiosmtpd, in a thread) that records when each message arrived."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []  # (monotonic time, To)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.monotonic()
        headers = BytesParser(policy=default_policy).parsebytes(envelope.content, headersonly=True)
        with self._lock:
            self.arrivals.append((arrived, str(headers["To"])))
        return "250 OK"

    def snapshot(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.arrivals)


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


# --- wrk -----------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is missing: installing the Debian package `wrk` (apt-get install -y wrk)")
    apt = ["apt-get", "install", "-y", "-q", "wrk"]
    if os.geteuid() != 0:
        apt = ["sudo", "-n", *apt]
    subprocess.run(apt, check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk could not be installed; install it (apt-get install wrk)")
    return found


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "postgresql": postgres_version(),
        "python": sys.version.split()[0],
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
