"""5. Scale of state: the same operations with 1,000 and with 100,000 reservations stored.

One database, migrated by `guestkey serve` itself. Reservations (each with an access method, a
door and a delivery) are seeded by SQL (`generate_series`), SMALL first, then up to LARGE, with
ANALYZE after each. DUE of them are due for the reconciler at each size. Measured at each size
(median of many runs, warm):
- the reconciler's due pass: `check_due_reservations` (the part of the pass whose cost depends on
  what is stored), with the DUE rows made due again before each run (untimed);
- `GET /v1/reservations?limit=50` over HTTP against the running `guestkey serve --no-worker`:
  the first page, and a page deep down (a cursor 90% of the way through);
- the webhook routing lookup `find_reservation`, by grant key, access method id and grant id.
The figure is the ratio LARGE/SMALL; target: each within 2x.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy import text

from bench.common import (
    API_CLIENT,
    API_KEY,
    Row,
    guestkey_env,
    guestkey_serve,
    say,
    scratch_database,
)

SMALL, LARGE = 1_000, 100_000
DUE = 5
RUNS = 60

SEED = """
WITH rows AS (
    SELECT n, gen_random_uuid() AS id
    FROM generate_series(CAST(:first AS int), CAST(:last AS int)) AS n
), reservations AS (
    INSERT INTO reservation (id, client_id, reservation_key, status, guest_name, guest_email,
        guest_locale, starts_at, ends_at, timezone, device_ids, acs_entrance_ids, space_ids,
        access_grant_key, grant_generation, access_grant_id, check_count, next_check_at,
        created_at, updated_at)
    SELECT id, CAST(:client AS uuid), 'scale-' || n, 'delivered', 'Guest ' || n,
        'g' || n || '@bench.example', 'en',
        now() + interval '1 day', now() + interval '3 days', 'UTC',
        '{52246fe3-a87c-527d-a1f0-11ea7711d1b1}', '{}', '{}',
        'guestkey-' || id, 1, 'grant-' || n, 3, NULL,
        now() - n * interval '1 second', now() - n * interval '1 second'
    FROM rows
    RETURNING id, reservation_key
), methods AS (
    INSERT INTO access_method (id, reservation_id, access_method_id, access_grant_id, mode,
        is_issued, is_backup_code, code_version)
    SELECT gen_random_uuid(), r.id, 'method-' || substr(r.reservation_key, 7),
        'grant-' || substr(r.reservation_key, 7), 'code', true, false, 1
    FROM reservations r
    RETURNING reservation_id, access_method_id
), doors AS (
    INSERT INTO reservation_door (id, reservation_id, door_type, door_id, name, position)
    SELECT gen_random_uuid(), id, 'device', '52246fe3-a87c-527d-a1f0-11ea7711d1b1',
        'Front Door', 0
    FROM reservations
)
INSERT INTO delivery (id, reservation_id, access_method_id, code_version, channel, recipient,
    kind, dedupe_key, status, attempts, send_after, sent_at)
SELECT gen_random_uuid(), m.reservation_id, m.access_method_id, 1, 'email', 'guest@bench.example',
    'new_code', 'dedupe-' || m.access_method_id, 'sent', 1, now(), now()
FROM methods m
"""


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def _timed(call: Callable[[], Awaitable[object]], runs: int = RUNS) -> float:
    for _ in range(5):
        await call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return _median_ms(samples)


async def measure_size(runtime, base_url: str, size: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from app.reconciler.flows import check_due_reservations
    from app.webhooks.service import find_reservation

    rng = random.Random(size)
    due_keys = [f"scale-{n}" for n in rng.sample(range(1, size + 1), DUE)]

    async def make_due() -> None:
        async with runtime.engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE reservation SET next_check_at = now() - interval '1 minute', "
                    "status = 'delivered' WHERE reservation_key = ANY(:keys)"
                ),
                {"keys": due_keys},
            )

    samples = []
    for _ in range(RUNS // 2):
        await make_due()
        started = time.perf_counter()
        checked = await check_due_reservations(runtime)
        samples.append(time.perf_counter() - started)
        assert checked == DUE, checked
    figures = {"reconciler due pass": _median_ms(samples)}

    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        async with runtime.engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT created_at, id FROM reservation "
                        "ORDER BY created_at DESC, id DESC OFFSET :skip LIMIT 1"
                    ),
                    {"skip": int(size * 0.9)},
                )
            ).one()
        raw = json.dumps([row.created_at.isoformat(), str(row.id)])
        cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

        async def first_page() -> None:
            response = await client.get("/v1/reservations", params={"limit": 50})
            assert response.status_code == 200 and len(response.json()["items"]) == 50

        async def deep_page() -> None:
            response = await client.get("/v1/reservations", params={"limit": 50, "cursor": cursor})
            assert response.status_code == 200 and len(response.json()["items"]) == 50

        figures["list first page"] = await _timed(first_page, RUNS // 2)
        figures["list deep page (90%)"] = await _timed(deep_page, RUNS // 2)

    numbers = [rng.randint(1, size) for _ in range(RUNS + 5)]
    async with runtime.sessionmaker() as session:
        ids = {
            key: value
            for key, value in (
                await session.execute(
                    text(
                        "SELECT reservation_key, id FROM reservation "
                        "WHERE reservation_key = ANY(:keys)"
                    ),
                    {"keys": [f"scale-{n}" for n in numbers]},
                )
            ).all()
        }
        lookups = {
            "webhook lookup by grant key": lambda n: {
                "access_grant_key": f"guestkey-{ids[f'scale-{n}']}"
            },
            "webhook lookup by access method id": lambda n: {"access_method_id": f"method-{n}"},
            "webhook lookup by grant id": lambda n: {"access_grant_id": f"grant-{n}"},
        }
        for name, payload_of in lookups.items():
            payloads = iter([payload_of(n) for n in numbers])

            async def lookup(payloads=payloads) -> None:  # type: ignore[no-untyped-def]
                assert await find_reservation(session, next(payloads)) is not None

            figures[name] = await _timed(lookup)
    return figures


async def _run(
    url: str, base_url: str, env: dict[str, str]
) -> tuple[dict[str, float], dict[str, float]]:
    from app.config import Settings
    from app.runtime import open_runtime

    # The server's own settings (its encryption key opens the data it stored at startup).
    for name, value in env.items():
        os.environ[name] = value
    settings = Settings()
    results = []
    async with open_runtime(settings, database_url=url) as runtime:
        async with runtime.engine.begin() as connection:
            client_id = await connection.scalar(
                text("SELECT id FROM api_client WHERE name = :name"), {"name": API_CLIENT}
            )
        first = 1
        for size in (SMALL, LARGE):
            started = time.perf_counter()
            async with runtime.engine.begin() as connection:
                await connection.execute(
                    text(SEED), {"first": first, "last": size, "client": client_id}
                )
            async with runtime.engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text("VACUUM ANALYZE"))
            say(f"scale: seeded up to {size} reservations in {time.perf_counter() - started:.1f} s")
            first = size + 1
            results.append(await measure_size(runtime, base_url, size))
            say(f"scale @ {size}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in results[-1].items()))
    return results[0], results[1]


def run() -> list[Row]:
    with scratch_database("scale") as url:
        env = guestkey_env(url, seam_url="http://127.0.0.1:9")
        with guestkey_serve(url, worker=False, env=env) as guestkey:
            small, large = asyncio.run(_run(url, guestkey.url, env))
    rows = []
    for name in small:
        ratio = large[name] / small[name]
        rows.append(
            Row(
                f"scale: {name}",
                f"{large[name]:.2f} ms @100k",
                f"{small[name]:.2f} ms @1k",
                ratio,
                "<= 2x",
                ratio <= 2,
            )
        )
    return rows
