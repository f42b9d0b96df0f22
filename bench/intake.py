"""1. Webhook intake: signed, distinct webhooks at `/webhooks/seam`, guestkey vs the reference.

For each server, on a fresh database:
- latency: an open-loop 500 requests/s for LATENCY_SECONDS (bench/load.py `fixed_rate`); p99
  from when each request was due, and an exact durability check (stored rows == 2xx == sent);
- throughput: wrk, CONNECTIONS keep-alive connections for THROUGHPUT_SECONDS; 2xx/s, and
  2xx <= stored rows <= requests issued (wrk drops the answers still in flight when it stops).
Every request carries its own `svix-id` and is signed just before the run (svix, ±5 min).

guestkey runs as operators run it on one box: `guestkey serve` with its in-process worker, which
processes each accepted event (a `device.connected` event: routed, then marked `ignored`) on the
same CPU while the load runs. An API-only replica (`--no-worker`) is measured too, for
information. Between guestkey's two runs the bench waits for the job queue to drain.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from svix.webhooks import Webhook

from bench.common import (
    WEBHOOK_SECRET,
    Process,
    Row,
    guestkey_serve,
    reference_app,
    say,
    scalar,
    scratch_database,
)
from bench.load import LoadResult, fixed_rate, raw_request, wrk_run

RATE = 500
LATENCY_SECONDS = 10
THROUGHPUT_SECONDS = 10
CONNECTIONS = 32
PREPARED = 40_000  # more than any server here answers in THROUGHPUT_SECONDS


def signed_webhooks(port: int, count: int) -> list[bytes]:
    webhook = Webhook(WEBHOOK_SECRET)
    now = datetime.now(UTC)
    workspace = str(uuid.uuid4())
    requests = []
    for _ in range(count):
        svix_id = f"msg_{uuid.uuid4().hex}"
        stamp = now.isoformat()
        body = json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "event_type": "device.connected",
                "workspace_id": workspace,
                "device_id": str(uuid.uuid4()),
                "connected_account_id": str(uuid.uuid4()),
                "created_at": stamp,
                "occurred_at": stamp,
            }
        )
        headers = {
            "Content-Type": "application/json",
            "svix-id": svix_id,
            "svix-timestamp": str(int(now.timestamp())),
            "svix-signature": webhook.sign(svix_id, now, body),
        }
        requests.append(
            raw_request("POST", "/webhooks/seam", port=port, headers=headers, body=body.encode())
        )
    return requests


def _port(process: Process) -> int:
    return int(process.url.rsplit(":", 1)[1])


def wait_for_jobs(url: str, timeout: float = 120) -> float:
    """Seconds until no job is waiting or running (guestkey's worker caught up)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        left = scalar(
            url, "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo','doing')"
        )
        if not left:
            break
        time.sleep(0.5)
    return time.monotonic() - started


@dataclass
class Measured:
    latency: LoadResult
    throughput: LoadResult
    durable: bool
    notes: str


def measure(process: Process, url: str, count_sql: str, *, drain: bool) -> Measured:
    port = _port(process)
    warm = signed_webhooks(port, 1000)
    fixed_rate(port, warm, rate=RATE)
    if drain:
        wait_for_jobs(url)

    before = scalar(url, count_sql)
    latency = fixed_rate(port, signed_webhooks(port, RATE * LATENCY_SECONDS), rate=RATE)
    time.sleep(0.5)
    stored = scalar(url, count_sql) - before
    exact = stored == latency.ok == latency.sent
    notes = [f"latency run: sent {latency.sent}, 2xx {latency.ok}, stored {stored}"]
    if drain:
        drained = wait_for_jobs(url)
        notes.append(f"worker drained the backlog in {drained:.1f} s")

    before = scalar(url, count_sql)
    requests = signed_webhooks(port, PREPARED)
    throughput = wrk_run(
        process.url + "/webhooks/seam",
        requests,
        seconds=THROUGHPUT_SECONDS,
        connections=CONNECTIONS,
    )
    time.sleep(1.0)
    stored_wrk = scalar(url, count_sql) - before
    bounded = throughput.ok <= stored_wrk <= throughput.sent
    notes.append(
        f"wrk run: issued {throughput.sent}, 2xx {throughput.ok}, stored {stored_wrk}, "
        f"statuses {throughput.statuses}, socket errors {throughput.errors}"
    )
    say(f"{process.name}: " + "; ".join(notes))
    return Measured(latency, throughput, exact and bounded, "; ".join(notes))


def run() -> list[Row]:
    with scratch_database("intake_ref") as ref_url:
        say("intake: reference app (svix verify + one insert, one commit per request)")
        with reference_app("reference_intake", ref_url) as reference:
            ref = measure(reference, ref_url, "SELECT count(*) FROM reference_inbox", drain=False)

    with scratch_database("intake_gk") as gk_url:
        say("intake: guestkey serve (with its in-process worker)")
        with guestkey_serve(gk_url) as guestkey:
            gk = measure(guestkey, gk_url, "SELECT count(*) FROM seam_webhook", drain=True)

    with scratch_database("intake_api") as api_url:
        say("intake: guestkey serve --no-worker (API replica)")
        with guestkey_serve(api_url, worker=False) as api_only:
            api = measure(api_only, api_url, "SELECT count(*) FROM seam_webhook", drain=False)

    ratio = gk.throughput.rps / ref.throughput.rps
    api_ratio = api.throughput.rps / ref.throughput.rps
    rows = [
        Row(
            "intake throughput (serve + worker)",
            f"{gk.throughput.rps:.0f} req/s",
            f"{ref.throughput.rps:.0f} req/s",
            ratio,
            ">= 0.8x",
            ratio >= 0.8,
        ),
        Row(
            "intake throughput (--no-worker)",
            f"{api.throughput.rps:.0f} req/s",
            f"{ref.throughput.rps:.0f} req/s",
            api_ratio,
            "(info)",
        ),
        Row(
            f"intake p99 @ {RATE}/s (serve + worker)",
            f"{gk.latency.p99_ms:.1f} ms",
            f"{ref.latency.p99_ms:.1f} ms",
            gk.latency.p99_ms / ref.latency.p99_ms,
            "<= 50 ms",
            gk.latency.p99_ms <= 50,
        ),
        Row(
            "intake non-2xx / durably stored",
            f"{_non_2xx(gk)} non-2xx; stored ok={gk.durable}",
            f"{_non_2xx(ref)} non-2xx; stored ok={ref.durable}",
            None,
            "0; all stored",
            _non_2xx(gk) == 0 and gk.durable,
        ),
    ]
    rows[0].notes.append("intake, guestkey serve + worker: " + gk.notes)
    rows[1].notes.append("intake, guestkey --no-worker: " + api.notes)
    rows[0].notes.append("intake, reference: " + ref.notes)
    return rows


def _non_2xx(measured: Measured) -> int:
    """Answers that were not 2xx, plus socket errors (wrk's unanswered in-flight requests at
    the end of its run are not answers and are not counted)."""
    answered_bad = sum(
        count
        for result in (measured.latency, measured.throughput)
        for status, count in result.statuses.items()
        if not 200 <= status < 300
    )
    return answered_bad + measured.latency.errors + measured.throughput.errors
