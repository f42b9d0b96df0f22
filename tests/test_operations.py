"""Health, readiness, metrics, OpenAPI and request ids."""

from __future__ import annotations

import subprocess
import sys

import httpx
from sqlalchemy import text

from app.runtime import Runtime


async def test_healthz_answers_while_running(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_is_ok_at_head_and_503_when_the_schema_is_behind(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    async with runtime.engine.begin() as connection:
        head = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        await connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    try:
        behind = await client.get("/readyz")
        assert behind.status_code == 503
        assert behind.json()["expected"] == head
    finally:
        async with runtime.engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :head"), {"head": head}
            )


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/reservations/{reservation_key}" in spec["paths"]
    assert "/webhooks/seam" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/v1/reservations")
    assert len(first.headers["x-request-id"]) >= 16
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/v1/reservations/some-secret-key")
    body = (await client.get("/metrics")).text
    assert 'route="/v1/reservations/{reservation_key}"' in body
    assert "some-secret-key" not in body


def test_long_running_processes_tune_the_garbage_collector() -> None:
    """`serve` and `worker` move start-up's objects out of the collector's sight and collect
    the youngest generation less often (app.cli.tune_gc). In a process of its own: the test
    run keeps Python's defaults."""
    script = (
        "import gc; from app.cli import GC_YOUNG_THRESHOLD, tune_gc; "
        "tune_gc(); "
        "print(gc.get_threshold()[0], GC_YOUNG_THRESHOLD, gc.get_freeze_count() > 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    after, wanted, frozen = result.stdout.split()
    assert after == wanted == "10000"
    assert frozen == "True"
