"""Fault injection across real processes: `guestkey serve` / `guestkey worker` and
`guestkey fake-seam` as processes on loopback ports, a real SMTP server (aiosmtpd), real
PostgreSQL. Each test causes the fault for real (a database stopped and started, a worker
killed with SIGKILL, Seam throttling, SMTP refusing connections) and checks that nothing
accepted is lost and that each guest gets exactly one email."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import procrastinate
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import Mailbox
from tests.e2e.conftest import WEBHOOK_SECRET
from tests.e2e.processes import fake_seam_process, free_port, wait_for
from tests.faults.support import (
    EmbeddedPostgres,
    Stack,
    api_client,
    fake_state,
    guest_body,
    guestkey_env,
    job_rows,
    reservation,
    seam_calls,
    seam_client,
    serve_process,
    stack,
    status_of,
    worker_process,
)

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

CREATE = "/access_grants/create"


def jobs_settled(database_url: str) -> bool:
    """No job left to run or running (retries scheduled later count as left)."""
    return not [job for job in job_rows(database_url) if job["status"] in ("todo", "doing")]


def grants_per_key(seam: httpx.Client) -> dict[str, int]:
    counts: dict[str, int] = {}
    for grant in fake_state(seam)["access_grants"]:
        key = grant.get("access_grant_key") or ""
        counts[key] = counts.get(key, 0) + 1
    return counts


def at(call: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(call["at"])


def put(api: httpx.Client, key: str) -> httpx.Response:
    return api.put(f"/v1/reservations/{key}", json=guest_body(key))


def assert_each_delivered_once(stack_: Stack, mailbox: Mailbox, keys: list[str]) -> None:
    for key in keys:
        body = reservation(stack_.api, key)
        assert body["status"] == "delivered", (key, body)
        assert [d["status"] for d in body["deliveries"]] == ["sent"], (key, body)
        assert len(mailbox.to(f"{key}@guests.example")) == 1, key
    assert len(mailbox.messages) == len(keys)
    grants = grants_per_key(stack_.seam)
    assert len(grants) == len(keys) and set(grants.values()) == {1}, grants


# --- 1. the database restarted under a running guestkey -------------------------------------
#
# The database is an embedded PostgreSQL of the test's own (`own_postgres`), stopped and
# started with `pg_ctl` on the same data directory: its URI (Unix socket dir and port) is the
# same afterwards, and the test checks that it is.


def test_the_api_rides_out_a_database_restart_without_being_restarted(
    own_postgres: EmbeddedPostgres, mailbox: Mailbox, tmp_path: Path
) -> None:
    database_url = own_postgres.create_database("guestkey_faults")
    uri_before = own_postgres.current_uri()
    with stack(
        database_url=database_url,
        smtp_port=mailbox.port,  # type: ignore[attr-defined]
        log_dir=tmp_path,
        no_worker=True,
    ) as s:
        assert put(s.api, "db-api-before").status_code == 201

        own_postgres.stop()
        assert own_postgres.current_uri() is None
        # A connection per request: what this test is about is the answers, not keep-alive
        # (see the next test for that).
        with api_client(s.guestkey, keepalive=False) as fresh:
            wait_for(lambda: fresh.get("/readyz").status_code == 503, timeout=10, what="503")
            for attempt in range(3):
                for response in (
                    put(fresh, f"db-api-during-{attempt}"),
                    fresh.get("/v1/reservations/db-api-before"),
                    fresh.get("/readyz"),
                ):
                    # Never a 2xx (nothing can be stored) nor a 4xx (the request was fine).
                    assert response.status_code >= 500, (response.request.url, response.text)
        assert s.guestkey.popen.poll() is None

        own_postgres.start()
        assert own_postgres.current_uri() == uri_before

        # Back without restarting guestkey (the pool's pre-ping drops the dead connections).
        wait_for(lambda: s.api.get("/readyz").status_code == 200, timeout=15, what="/readyz 200")
        assert s.api.get("/readyz").status_code == 200
        assert status_of(s.api, "db-api-before") == "pending"
        for attempt in range(3):
            # What failed during the outage is accepted once the client tries again.
            assert put(s.api, f"db-api-during-{attempt}").status_code == 201
        assert put(s.api, "db-api-after").status_code == 201
        assert s.guestkey.popen.poll() is None


def test_during_a_database_outage_requests_get_a_503_on_a_kept_alive_connection(
    own_postgres: EmbeddedPostgres, mailbox: Mailbox, tmp_path: Path
) -> None:
    database_url = own_postgres.create_database("guestkey_faults")
    with stack(
        database_url=database_url,
        smtp_port=mailbox.port,  # type: ignore[attr-defined]
        log_dir=tmp_path,
        no_worker=True,
    ) as s:
        assert put(s.api, "db-503-before").status_code == 201
        own_postgres.stop()
        outcomes: list[str] = []
        for attempt in range(3):
            for request in (
                lambda attempt=attempt: put(s.api, f"db-503-during-{attempt}"),
                lambda: s.api.get("/v1/reservations/db-503-before"),
                lambda: s.api.get("/readyz"),
            ):
                try:
                    response = request()
                except httpx.TransportError as error:
                    outcomes.append(f"{type(error).__name__}: {error}")
                    continue
                outcomes.append(str(response.status_code))
        own_postgres.start()
        # Every request answered, and answered "unavailable": a client or load balancer can
        # tell an outage from a bug, and its connection stays usable.
        assert outcomes == ["503"] * 9, outcomes


# A restart of PostgreSQL mid-job can surface a driver traceback in a worker's log (a connection
# dropped under a running statement); the guarantees below are what this test is about.
@pytest.mark.provokes_traceback
def test_a_database_restart_with_work_in_flight_loses_nothing(
    own_postgres: EmbeddedPostgres, mailbox: Mailbox, tmp_path: Path
) -> None:
    database_url = own_postgres.create_database("guestkey_faults")
    uri_before = own_postgres.current_uri()
    with stack(
        database_url=database_url,
        smtp_port=mailbox.port,  # type: ignore[attr-defined]
        log_dir=tmp_path,
    ) as s:
        accepted: list[str] = []

        # Work in flight: Seam takes 2 s over each create, so the sync jobs are inside Seam
        # calls when the database goes away, and must write their results after it did.
        s.seam.post(
            "/_fake/fail",
            json={"count": 3, "status": 0, "timeout_seconds": 2, "endpoint": CREATE},
        ).raise_for_status()
        for key in ("db-before-1", "db-before-2", "db-before-3"):
            assert put(s.api, key).status_code == 201
            accepted.append(key)
        wait_for(
            lambda: sum(job["status"] == "doing" for job in job_rows(database_url)) >= 3,
            timeout=10,
            what="three sync jobs running",
        )

        own_postgres.stop()
        outage = time.monotonic()
        refused: list[str] = []
        with api_client(s.guestkey, keepalive=False) as fresh:
            wait_for(lambda: fresh.get("/readyz").status_code == 503, timeout=10, what="503")
            for key in ("db-during-1", "db-during-2"):
                response = put(fresh, key)
                assert response.status_code >= 500, (key, response.status_code, response.text)
                refused.append(key)
            # The in-flight creates are answered while the database is down.
            wait_for(
                lambda: len([c for c in seam_calls(s.seam, CREATE) if c["status"] == 200]) >= 3,
                timeout=10,
                what="the three slow creates answered",
            )
            assert fresh.get("/readyz").status_code == 503
        own_postgres.start()
        outage_seconds = time.monotonic() - outage
        assert own_postgres.current_uri() == uri_before
        assert outage_seconds < 15

        wait_for(lambda: s.api.get("/readyz").status_code == 200, timeout=15, what="/readyz 200")
        for key in ("db-after-1", "db-after-2", *refused):
            response = put(s.api, key)
            assert response.status_code == 201, (key, response.text)
            accepted.append(key)

        def all_delivered() -> bool:
            return all(status_of(s.api, key) == "delivered" for key in accepted)

        try:
            wait_for(all_delivered, timeout=30, interval=0.25, what="all delivered")
        except AssertionError as error:
            statuses = {key: status_of(s.api, key) for key in accepted}
            jobs = [(j["task_name"], j["status"]) for j in job_rows(database_url)]
            raise AssertionError(f"{error}: {statuses}; jobs {jobs}") from None
        wait_for(lambda: jobs_settled(database_url), timeout=15, what="jobs settled")
        assert s.guestkey.popen.poll() is None, "guestkey was not restarted"
        # Each guest once; one grant per reservation at Seam (the creates answered during
        # the outage were found again by their keys, not made twice).
        assert_each_delivered_once(s, mailbox, accepted)


# --- 2. a worker killed with SIGKILL inside a job -------------------------------------------

# procrastinate workers heartbeat every 10 s (its default; guestkey does not change it): the
# threshold must stay above that, or a live worker's jobs count as stalled too.
STALLED_THRESHOLD = 15.0


async def retry_stalled_jobs(database_url: str, seconds_since_heartbeat: float) -> list[Any]:
    """The reconciler's stalled-job check (`app.reconciler.flows.retry_stalled_jobs`: the same
    procrastinate query, then `retry_job`), run from the test with a shorter threshold."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))
    async with app.open_async():
        stalled = list(
            await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
        )
        for job in stalled:
            await app.job_manager.retry_job(job)
    return stalled


def test_a_worker_killed_mid_job_is_retried_without_a_second_grant_or_email(
    e2e_database: str, mailbox: Mailbox, tmp_path: Path
) -> None:
    key, email = "kill-1", "kill-1@guests.example"
    with stack(
        database_url=e2e_database,
        smtp_port=mailbox.port,  # type: ignore[attr-defined]
        log_dir=tmp_path,
        no_worker=True,
    ) as s:
        # Seam takes 5 s over the create: the worker is surely inside the job, in the create
        # call, when it is killed.
        s.seam.post(
            "/_fake/fail",
            json={
                "count": 1,
                "status": 0,
                "timeout_seconds": 5,
                "endpoint": CREATE,
                "after_success": True,
            },
        ).raise_for_status()
        with worker_process(
            name="worker-1", env=s.env, log_dir=tmp_path, database_url=e2e_database
        ) as (worker_1, worker_1_id):
            assert put(s.api, key).status_code == 201
            job = wait_for(
                lambda: next(
                    (j for j in job_rows(e2e_database) if j["worker_id"] == worker_1_id), None
                ),
                timeout=10,
                what="the sync job taken by worker 1",
            )
            # The create is the job's first Seam call; it follows the job's start at once.
            time.sleep(1.0)  # grace for the create to be sent; proven below, not assumed
            worker_1.stop(signal.SIGKILL)
            assert worker_1.popen.returncode == -signal.SIGKILL
            killed_at = time.monotonic()

        [row] = [j for j in job_rows(e2e_database) if j["id"] == job["id"]]
        assert row["status"] == "doing" and row["worker_id"] == worker_1_id
        assert status_of(s.api, key) == "pending"

        with worker_process(
            name="worker-2", env=s.env, log_dir=tmp_path, database_url=e2e_database
        ) as (_, worker_2_id):
            # Worker 1 really was in the create call when it died: Seam either carried the
            # create out (its answer went to a dead process) or, as the fake does today,
            # abandoned it on reading the body of a request whose client was gone.
            def create_reached_seam() -> str | None:
                if [c for c in seam_calls(s.seam, CREATE) if c["status"] == 200]:
                    return "carried out"
                log = s.fake_seam.log()
                if "ClientDisconnect" in log and "create_access_grant" in log:
                    return "abandoned"
                return None

            outcome = wait_for(create_reached_seam, timeout=10, what="worker 1's create")
            grants_before_retry = len(fake_state(s.seam)["access_grants"])
            assert grants_before_retry == (1 if outcome == "carried out" else 0)

            # The job stays `doing` (worker 2 cannot take it) until the stalled-job check
            # finds worker 1's heartbeat older than the threshold.
            stalled: list[Any] = []

            def check() -> bool:
                [row] = [j for j in job_rows(e2e_database) if j["id"] == job["id"]]
                assert row["status"] == "doing", row
                stalled.extend(asyncio.run(retry_stalled_jobs(e2e_database, STALLED_THRESHOLD)))
                return bool(stalled)

            wait_for(check, timeout=STALLED_THRESHOLD + 10, interval=1.0, what="stalled job")
            waited = time.monotonic() - killed_at
            # Only the dead worker's job: the live worker 2 is not mistaken for a stalled one.
            assert [(j.id, j.worker_id) for j in stalled] == [(job["id"], worker_1_id)]

            wait_for(lambda: status_of(s.api, key) == "delivered", timeout=20, what="delivered")
            wait_for(lambda: jobs_settled(e2e_database), timeout=15, what="jobs settled")
            assert {j["worker_id"] for j in job_rows(e2e_database)} <= {None, worker_2_id}

        state = fake_state(s.seam)
        assert len(state["access_grants"]) == 1, state["access_grants"]
        # One create that succeeded: worker 1's (the retry's create was then refused for its
        # key, and the retry found the grant by it) or, when Seam never made that one, the
        # retry's.
        statuses = [c["status"] for c in seam_calls(s.seam, CREATE)]
        assert statuses.count(200) == 1, statuses
        assert statuses == ([200, 400] if outcome == "carried out" else [200]), statuses
        body = reservation(s.api, key)
        assert body["access_grant_id"] == state["access_grants"][0]["access_grant_id"]
        assert [d["status"] for d in body["deliveries"]] == ["sent"]
        assert len(mailbox.to(email)) == 1
        assert len(mailbox.messages) == 1
        print(f"worker 1's create {outcome}; stalled job retried {waited:.1f}s after the kill")


def test_kill_9_with_a_create_in_flight_then_a_restart_resumes_within_45_seconds(
    e2e_database: str, mailbox: Mailbox, tmp_path: Path
) -> None:
    """`guestkey serve` (API and worker in one process) is killed while its worker waits on
    Seam's create and is started again at once: the job it held goes back to work (stalled-job
    recovery every 10 s, 20 s without heartbeat) and the reservation leaves `pending` within
    45 s of the kill, with one grant and one email."""
    key, email = "restart-1", "restart-1@guests.example"
    port, seam_port = free_port(), free_port()
    env = guestkey_env(
        database_url=e2e_database,
        seam_url=f"http://127.0.0.1:{seam_port}",
        smtp_port=mailbox.port,  # type: ignore[attr-defined]
        data_dir=tmp_path / "data",
    )
    with (
        fake_seam_process(
            log_dir=tmp_path,
            port=seam_port,
            webhook_url=f"http://127.0.0.1:{port}/webhooks/seam",
            webhook_secret=WEBHOOK_SECRET,
            timeout=30,
        ) as fake,
        seam_client(fake) as seam,
    ):
        # Seam takes 8 s over the create (and makes the grant): it is in flight when killed.
        seam.post(
            "/_fake/fail",
            json={
                "count": 1,
                "status": 0,
                "timeout_seconds": 8,
                "endpoint": CREATE,
                "after_success": True,
            },
        ).raise_for_status()
        with (
            serve_process(name="guestkey-1", env=env, log_dir=tmp_path, port=port) as first,
            api_client(first) as api,
        ):
            assert put(api, key).status_code == 201
            wait_for(
                lambda: [j for j in job_rows(e2e_database) if j["status"] == "doing"],
                timeout=10,
                what="the sync job running",
            )
            time.sleep(1.0)  # the create follows the job's start at once
            first.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            assert first.popen.returncode == -signal.SIGKILL
        assert [j["status"] for j in job_rows(e2e_database)] == ["doing"]

        with (
            serve_process(name="guestkey-2", env=env, log_dir=tmp_path, port=port) as second,
            api_client(second) as api,
        ):
            wait_for(
                lambda: status_of(api, key) not in (None, "pending"),
                timeout=45 - (time.monotonic() - killed_at),
                interval=0.5,
                what="the reservation out of pending",
            )
            resumed_after = time.monotonic() - killed_at
            assert resumed_after < 45
            wait_for(lambda: status_of(api, key) == "delivered", timeout=30, what="delivered")
            body = reservation(api, key)
            state = fake_state(seam)
            assert len(state["access_grants"]) == 1, state["access_grants"]
            assert body["access_grant_id"] == state["access_grants"][0]["access_grant_id"]
            assert [d["status"] for d in body["deliveries"]] == ["sent"]
            assert len(mailbox.to(email)) == 1 and len(mailbox.messages) == 1
        print(f"left pending {resumed_after:.1f}s after the kill")


# --- 3. Seam throttling with Retry-After ----------------------------------------------------


def test_seam_429_with_retry_after_keeps_it_pending_then_grants_once(
    e2e_database: str, mailbox: Mailbox, tmp_path: Path
) -> None:
    key, email = "throttled-1", "throttled-1@guests.example"
    with stack(
        database_url=e2e_database,
        smtp_port=mailbox.port,  # type: ignore[attr-defined]
        log_dir=tmp_path,
    ) as s:
        s.seam.post(
            "/_fake/fail",
            json={"count": 2, "status": 429, "retry_after": 2, "endpoint": CREATE},
        ).raise_for_status()
        assert put(s.api, key).status_code == 201

        throttled = wait_for(
            lambda: (body := reservation(s.api, key))["last_error"] and body,
            timeout=10,
            what="last_error set",
        )
        assert throttled["status"] == "pending", throttled
        assert "429" in throttled["last_error"] or "rate" in throttled["last_error"].lower()

        wait_for(lambda: status_of(s.api, key) == "delivered", timeout=30, what="delivered")
        wait_for(lambda: jobs_settled(e2e_database), timeout=15, what="jobs settled")

        creates = seam_calls(s.seam, CREATE)
        assert [c["status"] for c in creates] == [429, 429, 200]
        gaps = [(at(b) - at(a)).total_seconds() for a, b in itertools.pairwise(creates)]
        assert all(gap >= 2.0 for gap in gaps), gaps  # Retry-After: 2 honoured each time
        assert len(fake_state(s.seam)["access_grants"]) == 1
        body = reservation(s.api, key)
        assert body["last_error"] is None
        assert [d["status"] for d in body["deliveries"]] == ["sent"]
        assert len(mailbox.to(email)) == 1
        assert len(mailbox.messages) == 1


# --- 4. SMTP down, then up ------------------------------------------------------------------


def test_smtp_down_for_a_while_retries_then_sends_exactly_once(
    e2e_database: str, tmp_path: Path
) -> None:
    key, email = "smtp-1", "smtp-1@guests.example"
    smtp_port = free_port()  # nothing listens there yet
    with stack(database_url=e2e_database, smtp_port=smtp_port, log_dir=tmp_path) as s:
        assert put(s.api, key).status_code == 201

        def retrying() -> dict[str, Any] | None:
            body = reservation(s.api, key)
            deliveries = body["deliveries"]
            if deliveries and deliveries[0]["status"] == "retrying":
                return body
            return None

        body = wait_for(retrying, timeout=15, what="delivery retrying")
        [delivery] = body["deliveries"]
        assert delivery["attempts"] >= 1 and delivery["error"], delivery
        assert delivery["sent_at"] is None
        assert body["status"] == "issued"

        mailbox = Mailbox()
        controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        try:
            started = time.monotonic()
            wait_for(lambda: status_of(s.api, key) == "delivered", timeout=30, what="delivered")
            wait_for(lambda: jobs_settled(e2e_database), timeout=15, what="jobs settled")
            print(f"sent {time.monotonic() - started:.1f}s after SMTP came up")
            body = reservation(s.api, key)
            [delivery] = body["deliveries"]
            assert delivery["status"] == "sent" and delivery["attempts"] >= 2, delivery
            assert len(mailbox.to(email)) == 1
            assert len(mailbox.messages) == 1
            code = fake_state(s.seam)["access_methods"][0]["code"]
            assert code in mailbox.messages[0].get_body(preferencelist=("plain",)).get_content()
        finally:
            controller.stop()
