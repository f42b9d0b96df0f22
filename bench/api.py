"""4. Reservations API: PUT (new), PUT (identical) and GET, guestkey vs a one-insert reference.

Both servers get the same wrk load (CONNECTIONS connections, SECONDS each, requests prepared in
advance): PUT new = a distinct key per request; PUT identical = KEYS existing reservations PUT
again with the same body, cycling; GET = those KEYS, cycling. Throughput (2xx/s) and wrk's p99.

guestkey runs as an API replica (`guestkey serve --no-worker`, as docker-compose runs the API):
the reference does no follow-up work either, and the work a PUT enqueues (Seam grant, webhooks,
email) is measured end to end by the e2e benchmark. Its jobs just wait in the queue here. The
fake Seam runs beside it, so the doors a PUT names are checked against guestkey's door list
(filled from Seam by the first PUT), as in production, not asked of an unreachable Seam each
time. After the warm-up each database is analyzed (`settle`): the figures are for tables
whose statistics know their rows. Target: each of the three at least TARGET x the reference.
"""

from __future__ import annotations

import json

import httpx
import psycopg

from bench.common import (
    API_KEY,
    Process,
    Row,
    fake_seam,
    free_port,
    guestkey_serve,
    reference_app,
    say,
    scratch_database,
)
from bench.e2e import body
from bench.load import LoadResult, raw_request, wrk_run

SECONDS = 8
CONNECTIONS = 16
KEYS = 200
PREPARED = 30_000
TARGET = 0.7


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def measure(process: Process, database_url: str) -> dict[str, LoadResult]:
    port = process.port
    # Built once: the identical PUTs send exactly the bodies stored here (`body` reads the
    # clock, so a second call would be a change of times).
    bodies = [json.dumps(body(index)).encode() for index in range(KEYS)]
    with httpx.Client(base_url=process.url, headers=_headers(), timeout=30) as client:
        for index in range(KEYS):
            response = client.put(f"/v1/reservations/same-{index}", content=bodies[index])
            if response.status_code not in (200, 201):
                raise RuntimeError(f"{process.name}: {response.status_code} {response.text}")
    # The identical PUTs must send exactly the bodies stored above.
    identical = [
        raw_request(
            "PUT", f"/v1/reservations/same-{i}", port=port, headers=_headers(), body=bodies[i]
        )
        for i in range(KEYS)
    ]
    gets = [
        raw_request("GET", f"/v1/reservations/same-{i}", port=port, headers=_headers())
        for i in range(KEYS)
    ]
    new = [
        raw_request(
            "PUT",
            f"/v1/reservations/new-{i}",
            port=port,
            headers=_headers(),
            body=bodies[i % KEYS],
        )
        for i in range(PREPARED)
    ]
    warm = [
        raw_request(
            "PUT", f"/v1/reservations/warm-{i}", port=port, headers=_headers(), body=bodies[0]
        )
        for i in range(3000)
    ]
    wrk_run(process.url, warm, seconds=2, connections=CONNECTIONS)
    settle(database_url)
    results = {
        "PUT new": wrk_run(process.url, new, seconds=SECONDS, connections=CONNECTIONS),
        "PUT identical": wrk_run(
            process.url, identical, seconds=SECONDS, connections=CONNECTIONS, cycle=True
        ),
        "GET": wrk_run(process.url, gets, seconds=SECONDS, connections=CONNECTIONS, cycle=True),
    }
    for name, result in results.items():
        say(
            f"{process.name} {name}: {result.rps:.0f}/s p99 {result.p99_ms:.1f} ms "
            f"statuses {result.statuses} errors {result.errors}"
        )
    return results


def settle(database_url: str) -> None:
    """The steady state the figures describe: tables whose statistics know their rows.

    The database is new, and the warm-up has just grown it from nothing to thousands of rows
    in seconds. PostgreSQL's autovacuum re-reads the statistics of a table that grew (at most
    once a minute), and each connection re-plans its prepared statements then. Until it has, a
    connection that prepared a look-up while its table held a few rows keeps the plan it made
    for them (a sequential scan, or the list's index on the client): that reads the whole
    table once it has grown. Measured on guestkey's PUT of an unchanged reservation:
    PostgreSQL spent 1.5 to 2.1 ms of CPU per request while its connections kept such plans (8 s
    of them read 16 to 24 million rows through the client's index), 0.30 to 0.34 ms after this
    ANALYZE; whether a run hit it depended on when autovacuum came by, so the ratios swung
    between runs of the same code. Each app's database is analyzed here, after its warm-up,
    the same for both; a deployment reaches this state by itself within a minute of a burst."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("ANALYZE")


def run() -> list[Row]:
    with scratch_database("api_ref") as ref_url:
        say("api: reference app (one statement per request)")
        with reference_app("reference_reservations", ref_url) as reference:
            ref = measure(reference, ref_url)
    with scratch_database("api_gk") as gk_url:
        say("api: guestkey serve --no-worker")
        port = free_port()
        # A reachable (fake) Seam: a PUT checks its doors against guestkey's door list, which
        # the first PUT fills from Seam; with Seam unreachable every PUT would ask again.
        with (
            fake_seam(f"http://127.0.0.1:{port}/webhooks/seam") as seam,
            guestkey_serve(gk_url, worker=False, seam_url=seam.url, port=port) as guestkey,
        ):
            gk = measure(guestkey, gk_url)
    rows = []
    for name in gk:
        g, r = gk[name], ref[name]
        ratio = g.rps / r.rps
        # Every answer 2xx (the requests still in flight when wrk stops are not answers).
        clean = all(200 <= status < 300 for status in g.statuses) and g.errors == 0
        rows.append(
            Row(
                f"API {name}: req/s (p99)",
                f"{g.rps:.0f}/s ({g.p99_ms:.0f} ms)",
                f"{r.rps:.0f}/s ({r.p99_ms:.0f} ms)",
                ratio,
                f">= {TARGET}x",
                ratio >= TARGET and clean,
            )
        )
    return rows
