"""2. End to end, and 5. memory: reservations PUT until the guest's email arrives.

`guestkey serve` (with its worker, as operators run it), the fake Seam as a real server (issuing
at once, webhooks on) and a real SMTP server (aiosmtpd). RESERVATIONS reservations are PUT by
CONCURRENCY concurrent clients; each has its own guest email, so every arrival is matched to its
PUT. Latency = email arrival - PUT sent. After the last email the bench waits SETTLE seconds for
duplicates, then counts messages per guest (exactly once). Then the RSS of the guestkey process.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import psutil

from bench.common import (
    API_KEY,
    DEVICE_IDS,
    Row,
    fake_seam,
    free_port,
    guestkey_serve,
    percentile,
    say,
    scratch_database,
    smtp_server,
)

RESERVATIONS = 500
CONCURRENCY = 20
TIMEOUT = 120
SETTLE = 3.0


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


def run() -> list[Row]:
    with scratch_database("e2e") as url, smtp_server() as (mailbox, smtp_port):
        guestkey_port = free_port()
        webhook_url = f"http://127.0.0.1:{guestkey_port}/webhooks/seam"
        with fake_seam(webhook_url) as seam:
            httpx.post(f"{seam.url}/_fake/auto_issue", json={"enabled": True, "delay": 0})
            with guestkey_serve(
                url, seam_url=seam.url, smtp_port=smtp_port, port=guestkey_port
            ) as guestkey:
                say(f"e2e: {RESERVATIONS} reservations, {CONCURRENCY} concurrent PUTs")
                started = time.monotonic()
                sent, statuses = asyncio.run(put_all(guestkey.url, "e2e"))
                puts_done = time.monotonic()
                deadline = started + TIMEOUT
                while time.monotonic() < deadline:
                    if len({to for _, to in mailbox.snapshot()}) >= RESERVATIONS:
                        break
                    time.sleep(0.1)
                last = max((at for at, _ in mailbox.snapshot()), default=time.monotonic())
                time.sleep(SETTLE)
                arrivals = mailbox.snapshot()
                rss = psutil.Process(guestkey.pid).memory_info().rss / 2**20
    first: dict[str, float] = {}
    counts: dict[str, int] = {}
    for at, to in arrivals:
        counts[to] = counts.get(to, 0) + 1
        first.setdefault(to, at)
    latencies = [(first[to] - sent[to]) * 1000 for to in sent if to in first]
    delivered = len(latencies)
    once = delivered == RESERVATIONS and all(n == 1 for n in counts.values())
    duplicates = sum(n - 1 for n in counts.values())
    rate = delivered / (last - started) if delivered else 0.0
    p50, p95, worst = (percentile(latencies, p) for p in (50, 95, 100))
    say(
        f"e2e: PUTs {dict((s, statuses.count(s)) for s in set(statuses))} in "
        f"{puts_done - started:.1f} s; {delivered} delivered, {duplicates} duplicates; "
        f"p50 {p50:.0f} ms p95 {p95:.0f} ms max {worst:.0f} ms; {rate:.1f}/s; RSS {rss:.0f} MiB"
    )
    return [
        Row(
            "e2e PUT->email p50 / p95 / max",
            f"{p50:.0f} / {p95:.0f} / {worst:.0f} ms",
            "-",
            None,
            "p95 <= 1000 ms",
            p95 <= 1000 and delivered == RESERVATIONS,
        ),
        Row(
            "e2e delivered / exactly once",
            f"{delivered}/{RESERVATIONS}, {duplicates} dup; {rate:.1f} res/s",
            "-",
            None,
            "all, once",
            once,
        ),
        Row(
            "memory: RSS of guestkey serve after e2e",
            f"{rss:.0f} MiB",
            "-",
            None,
            "<= 200 MB",
            rss * 2**20 <= 200e6,
        ),
    ]
