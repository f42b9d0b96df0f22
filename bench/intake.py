"""1. Webhook intake: signed, distinct webhooks at `/webhooks/seam`, guestkey vs the reference.

For each server, on a fresh database:
- latency: an open-loop 500 requests/s for LATENCY_SECONDS (bench/load.py `fixed_rate`); p99
  from when each request was due, and an exact durability check (stored rows == 2xx == sent);
- throughput: wrk, CONNECTIONS keep-alive connections for THROUGHPUT_SECONDS; 2xx/s, and
  2xx <= stored rows <= requests issued (wrk drops the answers still in flight when it stops).
Every request carries its own `svix-id` and is signed just before the run (svix, ±5 min).

guestkey runs as operators run it on one box: `guestkey serve` with its in-process worker beside
the API on the same CPU (these `device.connected` events are stored as `ignored`, with no job
to run). An API-only replica (`--no-worker`) is measured too, for
information. Between guestkey's two runs the bench waits for the job queue to drain.

Then Seam's mix: the six events the fake Seam sends for each new stay with two doors, half of
them of types guestkey acts on, for STAYS reservations seeded beforehand (bench/scale.py's
seed), so each handled event is routed at intake (a look-up by grant key, the event stored as
routed and one job enqueued in the same transaction). An API replica takes them: the jobs would
call Seam, which this benchmark does not run; the end-to-end benchmark measures that work.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from svix.webhooks import Webhook

from bench.common import (
    API_CLIENT,
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
STAYS = 2_000  # seeded reservations that Seam's mix of events routes to


Event = dict[str, Any]


def device_events() -> Iterator[Event]:
    """Events of a type guestkey stores and does not act on: `device.connected`."""
    while True:
        yield {
            "event_type": "device.connected",
            "device_id": str(uuid.uuid4()),
            "connected_account_id": str(uuid.uuid4()),
        }


def seam_mix(stays: list[tuple[str, str, str]]) -> Iterator[Event]:
    """What the fake Seam sends for one new stay with two doors, stay after stay (cycling over
    the seeded reservations): six events, three of them handled (`access_method.issued` and
    two `access_grant.access_granted_to_door`), each routed by its grant key at intake."""
    doors = [str(uuid.uuid4()), str(uuid.uuid4())]
    for grant_key, grant_id, method_id in itertools.cycle(stays):
        grant = {"access_grant_id": grant_id, "access_grant_key": grant_key}
        method = {
            "access_method_id": method_id,
            "access_grant_ids": [grant_id],
            "access_grant_keys": [grant_key],
        }
        yield {"event_type": "access_grant.created", **grant}
        yield {"event_type": "access_method.created", **method}
        yield {"event_type": "access_method.issued", **method, "code": "[redacted]"}
        for door in doors:
            yield {"event_type": "access_grant.access_granted_to_door", **grant, "device_id": door}
        yield {"event_type": "access_grant.access_granted_to_all_doors", **grant}


def signed_webhooks(port: int, count: int, events: Iterator[Event] | None = None) -> list[bytes]:
    webhook = Webhook(WEBHOOK_SECRET)
    now = datetime.now(UTC)
    workspace = str(uuid.uuid4())
    events = events or device_events()
    requests = []
    for _ in range(count):
        svix_id = f"msg_{uuid.uuid4().hex}"
        stamp = now.isoformat()
        body = json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "workspace_id": workspace,
                "created_at": stamp,
                "occurred_at": stamp,
                **next(events),
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


def seed_stays(url: str, count: int) -> list[tuple[str, str, str]]:
    """`count` delivered reservations (bench/scale.py's seed) to route events to:
    (grant key, grant id, access method id) each."""
    from bench.scale import SEED

    sql = SEED
    for name in ("first", "last", "client"):
        sql = sql.replace(f":{name}", f"%({name})s")
    with psycopg.connect(url, autocommit=True) as connection:
        client = connection.execute(
            "SELECT id FROM api_client WHERE name = %s", (API_CLIENT,)
        ).fetchone()
        assert client is not None
        connection.execute(sql, {"first": 1, "last": count, "client": client[0]})
        connection.execute("VACUUM ANALYZE")
        rows = connection.execute(
            "SELECT r.access_grant_key, r.access_grant_id, m.access_method_id "
            "FROM reservation r JOIN access_method m ON m.reservation_id = r.id"
        ).fetchall()
    return [(key, grant, method) for key, grant, method in rows]


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


def measure(
    process: Process,
    url: str,
    count_sql: str,
    *,
    drain: bool,
    events: Callable[[], Iterator[Event]] = device_events,
) -> Measured:
    port = _port(process)
    warm = signed_webhooks(port, 1000, events())
    fixed_rate(port, warm, rate=RATE)
    if drain:
        wait_for_jobs(url)

    before = scalar(url, count_sql)
    latency = fixed_rate(port, signed_webhooks(port, RATE * LATENCY_SECONDS, events()), rate=RATE)
    time.sleep(0.5)
    stored = scalar(url, count_sql) - before
    exact = stored == latency.ok == latency.sent
    notes = [f"latency run: sent {latency.sent}, 2xx {latency.ok}, stored {stored}"]
    if drain:
        drained = wait_for_jobs(url)
        notes.append(f"worker drained the backlog in {drained:.1f} s")

    before = scalar(url, count_sql)
    requests = signed_webhooks(port, PREPARED, events())
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

    with scratch_database("intake_mix") as mix_url:
        say(f"intake: guestkey serve --no-worker, Seam's mix for {STAYS} seeded stays")
        with guestkey_serve(mix_url, worker=False) as mix_api:
            stays = seed_stays(mix_url, STAYS)
            mix = measure(
                mix_api,
                mix_url,
                "SELECT count(*) FROM seam_webhook",
                drain=False,
                events=lambda: seam_mix(stays),
            )
            routed = scalar(mix_url, "SELECT count(*) FROM seam_webhook WHERE outcome = 'routed'")
            mix.notes += f"; routed at intake (one job each): {routed}"

    ratio = gk.throughput.rps / ref.throughput.rps
    api_ratio = api.throughput.rps / ref.throughput.rps
    mix_ratio = mix.throughput.rps / ref.throughput.rps
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
            "intake throughput, Seam's mix (--no-worker)",
            f"{mix.throughput.rps:.0f} req/s",
            f"{ref.throughput.rps:.0f} req/s",
            mix_ratio,
            ">= 0.8x",
            mix_ratio >= 0.8,
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
            f"{_non_2xx(gk) + _non_2xx(mix)} non-2xx; stored ok={gk.durable and mix.durable}",
            f"{_non_2xx(ref)} non-2xx; stored ok={ref.durable}",
            None,
            "0; all stored",
            _non_2xx(gk) == 0 and gk.durable and _non_2xx(mix) == 0 and mix.durable,
        ),
    ]
    rows[0].notes.append("intake, guestkey serve + worker: " + gk.notes)
    rows[1].notes.append("intake, guestkey --no-worker: " + api.notes)
    rows[0].notes.append("intake, reference: " + ref.notes)
    rows[2].notes.append("intake, Seam's mix: " + mix.notes)
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
