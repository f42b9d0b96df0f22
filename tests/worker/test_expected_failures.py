"""Expected conditions are one line without a traceback; a bug keeps its traceback; Seam
refusing the API key is a configuration error (DESIGN.md §9.6)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import text

from app.runtime import Runtime
from app.seam import client as seam_client
from app.worker.retry import REJECTED_KEY_RETRY_SECONDS
from tests.conftest import make_retries_due, run_jobs
from tests.factories import fail_next, put_reservation

CREATE = "/access_grants/create"


def worker_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("procrastinate.worker")]


async def seconds_until_next_attempt(runtime: Runtime) -> float:
    async with runtime.engine.connect() as connection:
        delay = await connection.scalar(
            text(
                "SELECT extract(epoch FROM scheduled_at - now()) FROM procrastinate_jobs "
                "WHERE status = 'todo' AND task_name = 'reservations.sync'"
            )
        )
    assert delay is not None
    return float(delay)


async def test_a_transient_seam_failure_is_one_warning_line_without_traceback(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await fail_next(
        fake_seam, count=1, status=503, error_type="service_unavailable", endpoint=CREATE
    )
    await put_reservation(client, "bk-1")
    with structlog.testing.capture_logs() as logs:
        await run_jobs(runtime)
    [failed] = [entry for entry in logs if entry["event"] == "seam.call_failed"]
    assert failed["endpoint"] == "access_grants.create" and failed["status"] == 503
    assert failed["error_type"] == "service_unavailable"
    assert failed["seam_request_id"]  # Seam's seam-request-id header, for its support
    assert failed["log_level"] == "warning" and "exc_info" not in failed
    [retry] = [r for r in worker_records(caplog) if getattr(r, "action", "") == "job_error_retry"]
    assert retry.levelno == logging.WARNING
    assert retry.exc_info is None and "TransientSeamError" in retry.getMessage()
    assert "seam_" not in retry.getMessage()  # never the API key


@pytest.mark.provokes_traceback  # a bug on purpose: its traceback must stay
async def test_an_unexpected_error_keeps_its_traceback(
    client: httpx.AsyncClient,
    runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(runtime.seam, "create_grant", broken)
    await put_reservation(client, "bk-1")
    await run_jobs(runtime)
    [failed] = [r for r in worker_records(caplog) if getattr(r, "action", "").startswith("job_e")]
    assert failed.exc_info is not None and isinstance(failed.exc_info[1], RuntimeError)


async def test_seam_rejecting_the_api_key_is_a_configuration_error_retried_slowly(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_seam: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(seam_client, "_rejected_key_error_due", seam_client._Throttle(60.0))
    await fail_next(fake_seam, count=2, status=401, error_type="unauthorized", endpoint=CREATE)
    await put_reservation(client, "bk-1")
    with structlog.testing.capture_logs() as logs:
        await run_jobs(runtime)
        reservation = (await client.get("/v1/reservations/bk-1")).json()
        assert reservation["status"] == "pending"
        assert reservation["last_error"].startswith("Seam rejected the API key")
        assert "SEAM_API_KEY" in reservation["last_error"]
        # At most one attempt every 10 minutes for this reservation.
        assert await seconds_until_next_attempt(runtime) >= REJECTED_KEY_RETRY_SECONDS - 5

        await make_retries_due(runtime)  # a second refusal within the minute
        await run_jobs(runtime)
    rejected = [entry for entry in logs if entry["event"] == "seam.api_key_rejected"]
    assert [entry["log_level"] for entry in rejected] == ["error", "warning"]  # once a minute
    assert all(entry["seam_request_id"] and entry["status"] == 401 for entry in rejected)
    assert all("seam_test" not in str(entry) for entry in logs)

    await make_retries_due(runtime)  # the key is fixed: the next attempt goes through
    await run_jobs(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] != "pending" and reservation["last_error"] is None


async def test_seam_403_is_a_rejected_key_too(
    client: httpx.AsyncClient, runtime: Runtime, fake_seam: Any
) -> None:
    await fail_next(fake_seam, count=1, status=403, error_type="forbidden", endpoint=CREATE)
    await put_reservation(client, "bk-1")
    await run_jobs(runtime)
    reservation = (await client.get("/v1/reservations/bk-1")).json()
    assert reservation["status"] == "pending"
    assert reservation["last_error"].startswith("Seam rejected the API key (403")
    assert await seconds_until_next_attempt(runtime) >= REJECTED_KEY_RETRY_SECONDS - 5
