"""3. Webhook intake: signed, distinct webhooks at `/webhooks/seam`, guestkey vs the reference.

The reference (bench/reference_intake.py) verifies the signature and inserts the body, one commit
per request. Every server gets a fresh database and all are up at once (idle while not measured):
- throughput: wrk, CONNECTIONS keep-alive connections for THROUGHPUT_SECONDS; 2xx/s, and
  2xx <= stored rows <= requests issued (wrk drops the answers still in flight when it stops).
  The servers take turns, ROUNDS times, and each one's best round counts, so drift in the
  machine's speed over the minutes of the run reaches them all alike.
- latency: then an open-loop RATE_SHARE of the reference's best throughput in this run (a rate
  the reference holds) for LATENCY_SECONDS (bench/load.py `fixed_rate`), the reference and
  guestkey `serve`; p99 from when each request was due, and an exact durability check
  (stored rows == 2xx == sent).
Every request carries its own `svix-id` and is signed just before the run (svix, ±5 min).

Events of an *ignored* type (IGNORED_TYPE: one guestkey neither acts on nor refreshes its door
list for, so it is stored as `ignored` with no job) go to guestkey as operators run it on one
box, `guestkey serve` with its in-process worker beside the API on the same CPU (after each of
its runs the bench waits for the worker's queue to drain), and to an API-only replica
(`--no-worker`), for information. Door events (`device.connected`...), which enqueue a door-list
refresh, are not measured here.

Then Seam's mix: the six events the fake Seam sends for each new stay with two doors, half of
them of types guestkey acts on, for STAYS reservations seeded beforehand (bench/scale.py's
seed), so each handled event is routed at intake (a look-up by grant key, the event stored as
routed, and the work it asks for queued). An API replica takes them: that work would call Seam,
which this benchmark does not run; the end-to-end benchmark measures it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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

RATE_SHARE = 0.6  # of the reference's best throughput: the latency run's rate
LATENCY_SECONDS = 10
THROUGHPUT_SECONDS = 10
CONNECTIONS = 32
PREPARED = 40_000  # more than any server here answers in THROUGHPUT_SECONDS
ROUNDS = 2  # throughput runs per server, taking turns
STAYS = 2_000  # seeded reservations that Seam's mix of events routes to
IGNORED_TYPE = "lock.locked"
MIX_TARGET = 1.0  # Seam's mix: guestkey's throughput / the reference's, at least
IGNORED_TARGET = 1.2  # ignored events: the same
P99_TARGET_MS = 50.0


Event = dict[str, Any]


def ignored_events() -> Iterator[Event]:
    """Events of a type guestkey stores and does not act on (IGNORED_TYPE): a lock locked."""
    from app.webhooks.events import DOOR_EVENTS, HANDLED_EVENTS

    if IGNORED_TYPE in HANDLED_EVENTS | DOOR_EVENTS:
        raise RuntimeError(f"guestkey acts on {IGNORED_TYPE}: pick another ignored event type")
    while True:
        yield {
            "event_type": IGNORED_TYPE,
            "device_id": str(uuid.uuid4()),
            "connected_account_id": str(uuid.uuid4()),
            "method": "manual",
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
    events = events or ignored_events()
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
class Server:
    """One server under test, its measurements, and what the durability checks saw."""

    name: str
    process: Process
    url: str
    count_sql: str
    drain: bool = False  # wait for guestkey's worker to catch up after each run
    events: Callable[[], Iterator[Event]] = ignored_events
    latency: LoadResult | None = None
    throughputs: list[LoadResult] = field(default_factory=list)
    durable: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def best(self) -> LoadResult:
        return max(self.throughputs, key=lambda result: result.rps)

    def stored(self) -> int:
        return int(scalar(self.url, self.count_sql))


def latency_run(server: Server, rate: int) -> None:
    """Warm up, then `rate` requests/s for LATENCY_SECONDS: p99, and stored == 2xx == sent."""
    fixed_rate(server.port, signed_webhooks(server.port, rate * 2, server.events()), rate=rate)
    if server.drain:
        wait_for_jobs(server.url)
    before = server.stored()
    requests = signed_webhooks(server.port, rate * LATENCY_SECONDS, server.events())
    server.latency = latency = fixed_rate(server.port, requests, rate=rate)
    time.sleep(0.5)
    stored = server.stored() - before
    server.durable &= stored == latency.ok == latency.sent
    server.notes.append(f"latency run: sent {latency.sent}, 2xx {latency.ok}, stored {stored}")
    if server.drain:
        server.notes.append(f"worker drained the backlog in {wait_for_jobs(server.url):.1f} s")


def throughput_run(server: Server) -> None:
    """wrk for THROUGHPUT_SECONDS: 2xx/s, and 2xx <= stored <= issued."""
    before = server.stored()
    requests = signed_webhooks(server.port, PREPARED, server.events())
    result = wrk_run(
        server.process.url + "/webhooks/seam",
        requests,
        seconds=THROUGHPUT_SECONDS,
        connections=CONNECTIONS,
    )
    time.sleep(1.0)
    stored = server.stored() - before
    server.durable &= result.ok <= stored <= result.sent
    server.throughputs.append(result)
    server.notes.append(
        f"wrk run: {result.rps:.0f} 2xx/s; issued {result.sent}, 2xx {result.ok}, "
        f"stored {stored}, statuses {result.statuses}, socket errors {result.errors}"
    )
    if server.drain:
        wait_for_jobs(server.url)


def run() -> list[Row]:
    with contextlib.ExitStack() as stack:

        def database(label: str) -> str:
            return stack.enter_context(scratch_database(label))

        inbox = "SELECT count(*) FROM seam_webhook"
        url = database("intake_ref")
        ref = Server(
            "reference",
            stack.enter_context(reference_app("reference_intake", url)),
            url,
            "SELECT count(*) FROM reference_inbox",
        )
        url = database("intake_gk")
        gk = Server("guestkey serve + worker", stack.enter_context(guestkey_serve(url)), url, inbox)
        gk.drain = True

        def api_replica(name: str, label: str) -> Server:
            url = database(label)
            return Server(name, stack.enter_context(guestkey_serve(url, worker=False)), url, inbox)

        api = api_replica("guestkey --no-worker", "intake_api")
        mix = api_replica("guestkey --no-worker, Seam's mix", "intake_mix")
        stays = seed_stays(mix.url, STAYS)
        mix.events = lambda: seam_mix(stays)
        servers = [ref, gk, api, mix]

        # All four are up at once (idle when not measured), and the throughput runs take
        # turns, ROUNDS times: drift of the machine's speed over the minutes of the run
        # reaches every server alike. The best round of each counts.
        for round_number in range(1, ROUNDS + 1):
            for server in servers:
                say(f"intake: {server.name}: wrk, round {round_number} of {ROUNDS}")
                throughput_run(server)
        rate = max(1, round(RATE_SHARE * ref.best.rps))
        for server in (ref, gk):
            say(f"intake: {server.name}: {rate}/s for {LATENCY_SECONDS} s")
            latency_run(server, rate)
        routed = scalar(mix.url, "SELECT count(*) FROM seam_webhook WHERE outcome = 'routed'")
        mix.notes.append(f"routed at intake: {routed}")
    for server in servers:
        say(f"{server.name}: " + "; ".join(server.notes))

    def ratio(server: Server) -> float:
        return server.best.rps / ref.best.rps

    assert gk.latency is not None and ref.latency is not None
    rows = [
        Row(
            "intake throughput, Seam's mix (--no-worker)",
            f"{mix.best.rps:.0f} req/s",
            f"{ref.best.rps:.0f} req/s",
            ratio(mix),
            f">= {MIX_TARGET}x",
            ratio(mix) >= MIX_TARGET,
        ),
        Row(
            f"intake throughput, ignored {IGNORED_TYPE} (serve + worker)",
            f"{gk.best.rps:.0f} req/s",
            f"{ref.best.rps:.0f} req/s",
            ratio(gk),
            f">= {IGNORED_TARGET}x",
            ratio(gk) >= IGNORED_TARGET,
        ),
        Row(
            f"intake throughput, ignored {IGNORED_TYPE} (--no-worker)",
            f"{api.best.rps:.0f} req/s",
            f"{ref.best.rps:.0f} req/s",
            ratio(api),
            "(info)",
        ),
        Row(
            f"intake p99 @ {rate}/s = {RATE_SHARE:.0%} of the reference's (serve + worker)",
            f"{gk.latency.p99_ms:.1f} ms",
            f"{ref.latency.p99_ms:.1f} ms",
            gk.latency.p99_ms / ref.latency.p99_ms,
            f"<= {P99_TARGET_MS:.0f} ms",
            gk.latency.p99_ms <= P99_TARGET_MS,
        ),
        Row(
            "intake non-2xx / durably stored",
            f"{sum(_non_2xx(s) for s in servers[1:])} non-2xx; "
            f"stored ok={all(s.durable for s in servers[1:])}",
            f"{_non_2xx(ref)} non-2xx; stored ok={ref.durable}",
            None,
            "0; all stored",
            all(_non_2xx(s) == 0 and s.durable for s in servers[1:]),
        ),
    ]
    for row, server in zip(rows, [mix, gk, api, ref], strict=False):
        row.notes.append(f"intake, {server.name}: " + "; ".join(server.notes))
    return rows


def _non_2xx(server: Server) -> int:
    """Answers that were not 2xx, plus socket errors (wrk's unanswered in-flight requests at
    the end of its run are not answers and are not counted)."""
    results = [server.latency, *server.throughputs]
    answered_bad = sum(
        count
        for result in results
        if result is not None
        for status, count in result.statuses.items()
        if not 200 <= status < 300
    )
    return answered_bad + sum(result.errors for result in results if result is not None)
