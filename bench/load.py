"""Load generators: `wrk` for throughput, an open-loop asyncio client for latency at a fixed rate.

Both send requests prepared in advance as raw HTTP/1.1 bytes (so every webhook can carry its own
`svix-id` and a fresh signature, and the load generator spends no CPU making them):

- `wrk_run` writes them to a file; bench/replay.lua reads it and sends each request once, in
  order (wrapping only when `cycle` is set), counting 2xx and other answers itself.
- `fixed_rate` is a small open-loop client (Debian ships no `wrk2`): request *i* is due at
  `start + i/rate`, is sent on the first free keep-alive connection, and its latency is measured
  from when it was due, so a server that falls behind is charged for the queueing too
  (no coordinated omission). Every request gets its answer, so counts are exact.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BENCH_DIR, ensure_wrk, percentile

REPLAY_LUA = BENCH_DIR / "replay.lua"


def raw_request(
    method: str, path: str, *, port: int, headers: dict[str, str], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    sent: int
    ok: int  # 2xx
    statuses: dict[int, int]
    errors: int  # socket errors and timeouts
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def non_2xx(self) -> int:
        return self.sent - self.ok


def wrk_run(
    url: str,
    requests: list[bytes],
    *,
    seconds: float,
    connections: int = 32,
    cycle: bool = False,
) -> LoadResult:
    """Closed loop at saturation: `connections` keep-alive connections, one wrk thread."""
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as scratch:
        data = Path(scratch) / "requests.bin"
        with data.open("wb") as out:
            for request in requests:
                out.write(f"{len(request)}\n".encode())
                out.write(request)
        report = Path(scratch) / "report.json"
        env_args = [str(data), str(report), "1" if cycle else "0"]
        command = [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(REPLAY_LUA),
            url,
            "--",
            *env_args,
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0 or not report.exists():
            raise RuntimeError(f"wrk failed:\n{completed.stdout}\n{completed.stderr}")
        summary = json.loads(report.read_text())
    if summary["exhausted"]:
        raise RuntimeError("wrk ran out of prepared requests: prepare more")
    statuses = {int(k): v for k, v in summary["statuses"].items()}
    answered = sum(statuses.values())
    return (
        LoadResult(
            sent=summary["issued"],
            ok=summary["ok"],
            statuses=statuses,
            errors=summary["errors"],
            seconds=summary["duration_us"] / 1e6,
            p50_ms=summary["p50_us"] / 1000,
            p99_ms=summary["p99_us"] / 1000,
        )
        if answered
        else LoadResult(0, 0, {}, summary["errors"], 1.0)
    )


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _fixed_rate(
    port: int, requests: list[bytes], rate: float, connections: int
) -> LoadResult:
    queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (item := await queue.get()) is not None:
                request, due = item
                try:
                    writer.write(request)
                    status = await asyncio.wait_for(_read_response(reader), 10)
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append((time.perf_counter() - due) * 1000)
                statuses[status] += 1
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections open before the clock starts
    start = time.perf_counter()
    for index, request in enumerate(requests):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((request, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    seconds = time.perf_counter() - start
    ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
    return LoadResult(
        sent=len(requests),
        ok=ok,
        statuses=dict(statuses),
        errors=errors,
        seconds=seconds,
        latencies_ms=latencies,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
    )


def fixed_rate(
    port: int, requests: Iterable[bytes], *, rate: float, connections: int = 64
) -> LoadResult:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return runner(_fixed_rate(port, list(requests), rate, connections))
