"""2. End to end, and 5. memory: reservations PUT until the guest's email arrives.

`guestkey serve` (with its worker, as operators run it), the fake Seam as a real server (issuing
at once, webhooks on) and a real SMTP server (aiosmtpd), all on this machine's cores.

- Burst (the issue's figure): RESERVATIONS reservations PUT by CONCURRENCY concurrent clients,
  as fast as guestkey answers. Each has its own guest email, so every arrival is matched to its
  PUT; latency = email arrival - PUT sent. The CPU seconds each process spent until the last
  email show where the machine's two cores went.
- Steady: then, on the same servers, an open-loop STEADY_SHARE of the burst's delivered rate for
  STEADY_SECONDS: the latency of one reservation when guestkey keeps up with its arrivals.
After each phase the bench waits SETTLE seconds for duplicates, then counts messages per guest
(exactly once). Then the RSS of the guestkey process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psutil

from bench.common import (
    API_KEY,
    DEVICE_IDS,
    Row,
    fake_seam,
    free_port,
    guestkey_env,
    guestkey_serve,
    guestkey_worker,
    percentile,
    say,
    scratch_database,
    smtp_server,
)

RESERVATIONS = 500
CONCURRENCY = 20
TIMEOUT = 120
SETTLE = 3.0
STEADY_SHARE = 0.5  # of the burst's delivered reservations per second
STEADY_SECONDS = 20


def cpu_by_process(guestkey_pids: list[int], seam_pid: int) -> dict[str, float]:
    """User + system CPU seconds so far: guestkey, the fake Seam, PostgreSQL's backends, and
    this process (load generator and SMTP server)."""

    def seconds(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    postgres = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                postgres += seconds(process)
    return {
        "guestkey": sum(seconds(psutil.Process(pid)) for pid in guestkey_pids),
        "fake Seam": seconds(psutil.Process(seam_pid)),
        "PostgreSQL": postgres,
        "bench (client + SMTP)": seconds(psutil.Process()),
    }


def body(index: int) -> dict[str, object]:
    starts = datetime.now(UTC) + timedelta(days=1)
    return {
        "guest": {"name": f"Guest {index}", "email": f"guest{index}@bench.example"},
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(days=2)).isoformat(),
        "device_ids": DEVICE_IDS,
        "property_name": "Bench Loft",
        "timezone": "Europe/Lisbon",
    }


async def put_all(base_url: str, run: str) -> tuple[dict[str, float], list[int]]:
    sent: dict[str, float] = {}
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(RESERVATIONS):
        queue.put_nowait(index)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                sent[f"guest{index}@bench.example"] = time.monotonic()
                response = await client.put(f"/v1/reservations/{run}-{index}", json=body(index))
                statuses.append(response.status_code)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return sent, statuses


async def put_at_rate(
    base_url: str, run: str, *, rate: float, count: int, first: int
) -> tuple[dict[str, float], list[int]]:
    """Open loop: PUT number i is sent at start + i/rate, whether or not earlier ones are done."""
    sent: dict[str, float] = {}
    statuses: list[int] = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=30,
        limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
    ) as client:
        start = time.monotonic()

        async def one(index: int) -> None:
            await asyncio.sleep(max(0.0, start + (index - first) / rate - time.monotonic()))
            sent[f"guest{index}@bench.example"] = time.monotonic()
            response = await client.put(f"/v1/reservations/{run}-{index}", json=body(index))
            statuses.append(response.status_code)

        await asyncio.gather(*(one(index) for index in range(first, first + count)))
    return sent, statuses


@dataclass
class Arrivals:
    latencies: list[float]
    delivered: int
    duplicates: int

    @classmethod
    def of(cls, sent: dict[str, float], arrivals: list[tuple[float, str]]) -> Arrivals:
        first: dict[str, float] = {}
        counts: dict[str, int] = {}
        for at, to in arrivals:
            if to in sent:
                counts[to] = counts.get(to, 0) + 1
                first.setdefault(to, at)
        latencies = [(first[to] - sent[to]) * 1000 for to in sent if to in first]
        return cls(latencies, len(latencies), sum(n - 1 for n in counts.values()))

    def summary(self) -> str:
        p50, p95, worst = (percentile(self.latencies, p) for p in (50, 95, 100))
        return f"{p50:.0f} / {p95:.0f} / {worst:.0f} ms"


def wait_for_mail(mailbox: Any, guests: dict[str, float], timeout: float) -> float:
    """Monotonic time of the last of these guests' first emails (or of giving up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len({to for _, to in mailbox.snapshot() if to in guests}) >= len(guests):
            break
        time.sleep(0.1)
    return max((at for at, to in mailbox.snapshot() if to in guests), default=time.monotonic())


def run() -> list[Row]:
    return measure(split=False) + measure(split=True)


def measure(*, split: bool) -> list[Row]:
    """One `guestkey serve` (API + in-process worker), or, `split`, an API replica
    (`serve --no-worker`) and one `guestkey worker` process, as docker-compose runs them."""
    label = "api + worker" if split else "serve"
    with scratch_database("e2e") as url, smtp_server() as (mailbox, smtp_port):
        guestkey_port = free_port()
        webhook_url = f"http://127.0.0.1:{guestkey_port}/webhooks/seam"
        with contextlib.ExitStack() as stack:
            seam = stack.enter_context(fake_seam(webhook_url))
            httpx.post(f"{seam.url}/_fake/auto_issue", json={"enabled": True, "delay": 0})
            env = guestkey_env(url, seam_url=seam.url, smtp_port=smtp_port)
            guestkey = stack.enter_context(
                guestkey_serve(url, port=guestkey_port, worker=not split, env=env)
            )
            pids = [guestkey.pid]
            if split:
                pids.append(stack.enter_context(guestkey_worker(env)).pid)
            say(f"e2e ({label}): {RESERVATIONS} reservations, {CONCURRENCY} concurrent PUTs")
            cpu_before = cpu_by_process(pids, seam.pid)
            started = time.monotonic()
            sent, statuses = asyncio.run(put_all(guestkey.url, "e2e"))
            puts_done = time.monotonic()
            last = wait_for_mail(mailbox, sent, TIMEOUT)
            cpu = {
                name: seconds - cpu_before.get(name, 0.0)
                for name, seconds in cpu_by_process(pids, seam.pid).items()
            }
            time.sleep(SETTLE)
            burst = Arrivals.of(sent, mailbox.snapshot())
            rate = burst.delivered / (last - started) if burst.delivered else 0.0

            # The same servers at a steady rate below what the burst showed they sustain.
            steady_rate = max(1.0, round(rate * STEADY_SHARE, 1))
            steady_count = int(steady_rate * STEADY_SECONDS)
            say(f"e2e ({label}): steady {steady_rate}/s for {STEADY_SECONDS} s (open loop)")
            steady_sent, steady_statuses = asyncio.run(
                put_at_rate(
                    guestkey.url, "steady", rate=steady_rate, count=steady_count, first=RESERVATIONS
                )
            )
            wait_for_mail(mailbox, steady_sent, TIMEOUT)
            time.sleep(SETTLE)
            steady = Arrivals.of(steady_sent, mailbox.snapshot())
            rss = sum(psutil.Process(pid).memory_info().rss for pid in pids) / 2**20
    say(
        f"e2e ({label}): CPU seconds during the burst: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
        + f" (wall {last - started:.1f} s, 2 cores = {2 * (last - started):.0f} CPU s)"
    )
    say(
        f"e2e ({label}): burst PUTs {dict(Counter(statuses))} in {puts_done - started:.1f} s "
        f"({RESERVATIONS / (puts_done - started):.0f}/s); {burst.delivered} delivered, "
        f"{burst.duplicates} duplicates; {burst.summary()}; {rate:.1f}/s; "
        f"steady PUTs {dict(Counter(steady_statuses))}: {steady.delivered}/{steady_count} "
        f"delivered, {steady.duplicates} duplicates; {steady.summary()}; RSS {rss:.0f} MiB"
    )
    burst_p95 = percentile(burst.latencies, 95)
    steady_p95 = percentile(steady.latencies, 95)
    steady_once = steady.delivered == steady_count and steady.duplicates == 0
    guestkey_ms = 1000 * cpu["guestkey"] / max(burst.delivered, 1)
    rows = [
        Row(
            f"e2e {label}: burst p50 / p95 / max",
            burst.summary(),
            "-",
            None,
            "p95 <= 1000 ms",
            burst_p95 <= 1000 and burst.delivered == RESERVATIONS,
        ),
        Row(
            f"e2e {label}: burst delivered / once; rate",
            f"{burst.delivered}/{RESERVATIONS}, {burst.duplicates} dup; {rate:.1f} res/s",
            "-",
            None,
            "all, once",
            burst.delivered == RESERVATIONS and burst.duplicates == 0,
        ),
        Row(
            f"e2e {label}: guestkey CPU per reservation",
            f"{guestkey_ms:.0f} ms",
            "-",
            None,
            "(info)",
            None,
        ),
        Row(
            f"e2e {label}: steady {steady_rate}/s p50 / p95 / max",
            steady.summary(),
            "-",
            None,
            "p95 <= 1000 ms",
            steady_p95 <= 1000 and steady_once,
        ),
    ]
    if not split:
        rows.append(
            Row(
                "memory: RSS of guestkey serve after e2e",
                f"{rss:.0f} MiB",
                "-",
                None,
                "<= 200 MB",
                rss * 2**20 <= 200e6,
            )
        )
    return rows
