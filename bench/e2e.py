"""1. Cost, 2. capacity and 5. memory, end to end: reservations PUT until the guest's email arrives.

Every system under test gets its own database, its own fake Seam (a real server, issuing codes
at once, its webhooks going to that system) and its own SMTP server (aiosmtpd, in this process),
all on this machine's cores. Every reservation has its own guest email, so each arrival is
matched to its PUT: latency = email arrival - PUT sent. The PUT bodies are the same for all.

- Cost (target 1): a burst of RESERVATIONS PUTs from CONCURRENCY concurrent clients, as fast as
  the system answers, and the CPU seconds each process spent from the first PUT to the last
  email (bench/common.py's CpuMeter: the system's processes, the fake Seam, PostgreSQL's backends
  of that database and the server's own processes, this process), per delivered reservation.
  guestkey as one `guestkey serve` (the headline) and as an API replica + a `guestkey worker`
  (information), against bench/reference_inline.py: the same Seam calls and the same email,
  done inline in the requests, with no durability, dedupe or retries.
- Capacity (target 2): steps of open-loop PUTs at a steady rate for STEP_SECONDS (each PUT at
  a random moment of its slot: `put_at_rate`), each followed by waiting for its emails. A step
  passes when its p95 is at most P95_LIMIT_MS and every PUT was answered and its email
  delivered once; it is overloaded when its p95 passes OVERLOAD_MS or one of those failed. The
  rate starts at FIRST_RATE and is multiplied by STEP_FACTOR after every step not overloaded
  (passed or not: see `Stepper`); an overloaded rate is run ATTEMPTS times in all, and when it
  is overloaded every time the stepping ends, with one step at the geometric middle of it and
  the rate below when that one passed. The capacity is the highest passing rate. `guestkey
  serve` against today's: guestkey as it was at BENCH_BASELINE_COMMIT (a temporary git
  worktree; its own `serve` on its own database, migrated by its own code), up at the same
  time, the two stepped in turns, each from fresh after WARMUP unmeasured reservations. With
  BENCH_REFERENCE_CAPACITY=1 the inline reference's capacity is measured too, for information,
  from the grid's rate below half its burst rate.
- Exactly once: after each system's last phase, every reservation it was sent is counted in its
  mailbox: delivered, and no guest twice.
- Memory (target 5): the RSS of the `guestkey serve` process that was stepped and then took a
  burst (unmeasured for cost), or of the burst's own, whichever is larger.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil

from bench.common import (
    API_KEY,
    DEVICE_IDS,
    REPO_ROOT,
    CpuMeter,
    Mailbox,
    Row,
    baseline_checkout,
    fake_seam,
    free_port,
    guestkey_env,
    guestkey_serve,
    guestkey_worker,
    percentile,
    reference_app,
    say,
    scratch_database,
    smtp_server,
)

RESERVATIONS = 500
CONCURRENCY = 20
TIMEOUT = 120
SETTLE = 3.0
COST_TARGET = 2.0  # guestkey's CPU per reservation / the inline reference's, at most

FIRST_RATE = 2.0  # reservations per second
STEP_FACTOR = 1.25
STEP_SECONDS = 10
STEP_TIMEOUT = 60.0  # for a step's emails, after its last PUT
STEP_SETTLE = 1.0
ATTEMPTS = 3  # runs of an overloaded rate before the stepping ends
MAX_STEPS = 30
WARMUP = 10
P95_LIMIT_MS = 1000.0
OVERLOAD_MS = 2500.0  # a step's p95 past this: the system fell behind the rate
CAPACITY_TARGET = 3.0  # guestkey's capacity / today's, at least
# The inline reference's capacity (information; a few minutes, most of them spent working off
# its overloaded steps): measured only when this is set to 1.
REFERENCE_CAPACITY = os.environ.get("BENCH_REFERENCE_CAPACITY") == "1"


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


async def put(client: httpx.AsyncClient, key: str, index: int) -> int:
    """PUT one reservation: its status, or 0 when no answer came (a timeout, a reset)."""
    try:
        response = await client.put(f"/v1/reservations/{key}", json=body(index))
    except httpx.HTTPError:
        return 0
    return response.status_code


async def put_all(
    base_url: str, run: str, *, first: int = 0, count: int | None = None
) -> tuple[dict[str, float], list[int]]:
    """Closed loop: CONCURRENCY clients, each PUTting the next reservation (of `count`, by
    default RESERVATIONS) when its last is answered."""
    sent: dict[str, float] = {}
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(first, first + (count or RESERVATIONS)):
        queue.put_nowait(index)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                sent[f"guest{index}@bench.example"] = time.monotonic()
                statuses.append(await put(client, f"{run}-{index}", index))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return sent, statuses


async def put_at_rate(
    base_url: str, run: str, *, rate: float, count: int, first: int
) -> tuple[dict[str, float], list[int]]:
    """Open loop at a steady rate: PUT number i is sent at a random moment of its own slot,
    start + (i + U(0, 1))/rate, whether or not earlier ones are done. Random within the slot,
    not on its edge: arrivals on a fixed grid keep one phase against guestkey's periodic work
    (its worker's one-second poll for jobs), and each step would measure that phase's luck."""
    jitter = random.Random(first)  # the same moments for every run of the bench
    offsets = [(index + jitter.random()) / rate for index in range(count)]
    sent: dict[str, float] = {}
    statuses: list[int] = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=30,
        limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
    ) as client:
        start = time.monotonic()

        async def one(index: int) -> None:
            await asyncio.sleep(max(0.0, start + offsets[index - first] - time.monotonic()))
            sent[f"guest{index}@bench.example"] = time.monotonic()
            statuses.append(await put(client, f"{run}-{index}", index))

        await asyncio.gather(*(one(index) for index in range(first, first + count)))
    return sent, statuses


@dataclass
class Arrivals:
    latencies: list[float]
    delivered: int
    duplicates: int

    @classmethod
    def of(cls, sent: dict[str, float], arrivals: list[tuple[float, str]]) -> Arrivals:
        first: dict[str, float] = {}
        counts: dict[str, int] = {}
        for at, to in arrivals:
            if to in sent:
                counts[to] = counts.get(to, 0) + 1
                first.setdefault(to, at)
        latencies = [(first[to] - sent[to]) * 1000 for to in sent if to in first]
        return cls(latencies, len(latencies), sum(n - 1 for n in counts.values()))

    @property
    def p95(self) -> float:
        return percentile(self.latencies, 95)

    def summary(self) -> str:
        p50, p95, worst = (percentile(self.latencies, p) for p in (50, 95, 100))
        return f"{p50:.0f} / {p95:.0f} / {worst:.0f} ms"


def wait_for_mail(mailbox: Mailbox, guests: dict[str, float], timeout: float) -> float:
    """Monotonic time of the last of these guests' first emails (or of giving up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len({to for _, to in mailbox.snapshot() if to in guests}) >= len(guests):
            break
        time.sleep(0.1)
    return max((at for at, to in mailbox.snapshot() if to in guests), default=time.monotonic())


# --- the systems under test ------------------------------------------------------------------


@dataclass
class System:
    """One system under test, with its fake Seam and its mailbox, and everything sent to it."""

    name: str
    url: str
    pids: list[int]
    seam_pid: int
    database: str
    mailbox: Mailbox
    sent: dict[str, float] = field(default_factory=dict)
    next_index: int = 0

    def take(self, count: int) -> int:
        """The first of `count` guest numbers never used on this system."""
        first, self.next_index = self.next_index, self.next_index + count
        return first

    def rss_mib(self) -> float:
        processes = [psutil.Process(pid) for pid in self.pids]
        processes += [child for p in processes for child in p.children(recursive=True)]
        return float(sum(p.memory_info().rss for p in processes)) / 2**20

    def exactly_once(self) -> Arrivals:
        """Every reservation sent to this system: delivered? and never twice?"""
        wait_for_mail(self.mailbox, self.sent, TIMEOUT)
        time.sleep(SETTLE)
        return Arrivals.of(self.sent, self.mailbox.snapshot())


@contextlib.contextmanager
def system(
    name: str, *, reference: bool = False, split: bool = False, root: Path = REPO_ROOT
) -> Iterator[System]:
    """guestkey (`serve`, or with `split` an API replica and a `guestkey worker` process, as
    docker-compose runs them) from the checkout at `root`, or the inline reference."""
    with (
        scratch_database("e2e") as url,
        smtp_server() as (mailbox, smtp_port),
        contextlib.ExitStack() as stack,
    ):
        port = free_port()
        seam = stack.enter_context(fake_seam(f"http://127.0.0.1:{port}/webhooks/seam"))
        httpx.post(f"{seam.url}/_fake/auto_issue", json={"enabled": True, "delay": 0})
        if reference:
            mail = {
                "SEAM_ENDPOINT": seam.url,
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(smtp_port),
                "MAIL_FROM": "Bench Stays <keys@bench.example>",
            }
            server = stack.enter_context(
                reference_app("reference_inline", url, port=port, extra_env=mail)
            )
            pids = [server.pid]
        else:
            env = guestkey_env(url, seam_url=seam.url, smtp_port=smtp_port)
            label = name.replace(" ", "-")
            server = stack.enter_context(
                guestkey_serve(url, port=port, worker=not split, env=env, root=root, name=label)
            )
            pids = [server.pid]
            if split:
                pids.append(stack.enter_context(guestkey_worker(env)).pid)
        yield System(name, server.url, pids, seam.pid, url, mailbox)


# --- cost: a burst ---------------------------------------------------------------------------


@dataclass
class Burst:
    arrivals: Arrivals
    statuses: Counter[int]
    cpu: dict[str, float]  # CPU seconds by group, first PUT to last email
    seconds: float  # first PUT to last email
    put_seconds: float

    @property
    def rate(self) -> float:
        return self.arrivals.delivered / self.seconds if self.arrivals.delivered else 0.0

    def ms_per_reservation(self, group: str) -> float:
        return 1000 * self.cpu[group] / max(self.arrivals.delivered, 1)

    @property
    def complete(self) -> bool:
        return self.arrivals.delivered == RESERVATIONS and self.arrivals.duplicates == 0


def burst(target: System) -> Burst:
    """RESERVATIONS PUTs from CONCURRENCY clients; CPU per process until the last email."""
    say(f"e2e ({target.name}): burst of {RESERVATIONS} reservations, {CONCURRENCY} concurrent")
    first = target.take(RESERVATIONS)
    meter = CpuMeter(
        {"system": target.pids, "fake Seam": [target.seam_pid]}, [target.database]
    ).start()
    started = time.monotonic()
    sent, statuses = asyncio.run(put_all(target.url, "burst", first=first, count=RESERVATIONS))
    puts_done = time.monotonic()
    last = wait_for_mail(target.mailbox, sent, TIMEOUT)
    cpu = meter.stop()
    target.sent |= sent
    time.sleep(SETTLE)
    result = Burst(
        Arrivals.of(sent, target.mailbox.snapshot()),
        Counter(statuses),
        cpu,
        last - started,
        puts_done - started,
    )
    say(
        f"e2e ({target.name}): burst PUTs {dict(result.statuses)} in {result.put_seconds:.1f} s; "
        f"{result.arrivals.delivered} delivered, {result.arrivals.duplicates} duplicates; "
        f"{result.arrivals.summary()}; {result.rate:.1f}/s. CPU seconds: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
        + f" (wall {result.seconds:.1f} s, 2 cores = {2 * result.seconds:.0f} CPU s)"
    )
    return result


# --- capacity: stepping the rate -------------------------------------------------------------


@dataclass
class Step:
    rate: float
    count: int
    arrivals: Arrivals
    statuses: Counter[int]

    @property
    def complete(self) -> bool:
        """Every PUT answered 2xx and its email delivered, once."""
        return (
            self.arrivals.delivered == self.count
            and self.arrivals.duplicates == 0
            and all(200 <= status < 300 for status in self.statuses)
        )

    @property
    def passed(self) -> bool:
        return self.complete and self.arrivals.p95 <= P95_LIMIT_MS

    @property
    def overloaded(self) -> bool:
        """The system fell behind this rate (or lost its footing): a p95 past OVERLOAD_MS, a
        message lost or duplicated, a PUT failed."""
        return not self.complete or self.arrivals.p95 > OVERLOAD_MS

    def describe(self) -> str:
        lost = self.count - self.arrivals.delivered
        problems = [f"{lost} lost"] if lost else []
        if self.arrivals.duplicates:
            problems.append(f"{self.arrivals.duplicates} duplicated")
        failed = sum(n for status, n in self.statuses.items() if not 200 <= status < 300)
        if failed:
            problems.append(f"{failed} PUTs failed")
        verdict = "ok" if self.passed else "OVERLOADED" if self.overloaded else "over 1 s"
        extra = f" ({', '.join(problems)})" if problems else ""
        return f"{self.rate:.1f}/s p95 {self.arrivals.p95:.0f} ms {verdict}{extra}"


@dataclass
class Capacity:
    steps: list[Step]

    @property
    def best(self) -> Step | None:
        passed = [step for step in self.steps if step.passed]
        return max(passed, key=lambda step: step.rate) if passed else None

    @property
    def rate(self) -> float:
        return self.best.rate if self.best else 0.0

    def figure(self) -> str:
        if self.best is None:
            return "none passed"
        return f"{self.best.rate:.1f}/s (p95 {self.best.arrivals.p95:.0f} ms)"

    def describe(self) -> str:
        return "; ".join(step.describe() for step in self.steps)


def step(target: System, rate: float, *, count: int | None = None, label: str = "step") -> Step:
    """Open-loop PUTs at `rate` for STEP_SECONDS (or `count` of them), then their emails."""
    count = count or max(1, round(rate * STEP_SECONDS))
    first = target.take(count)
    sent, statuses = asyncio.run(
        put_at_rate(target.url, "step", rate=rate, count=count, first=first)
    )
    target.sent |= sent
    wait_for_mail(target.mailbox, sent, STEP_TIMEOUT)
    time.sleep(STEP_SETTLE)
    result = Step(rate, count, Arrivals.of(sent, target.mailbox.snapshot()), Counter(statuses))
    say(f"e2e ({target.name}): capacity {label} {result.describe()}")
    return result


class Stepper:
    """One system's stepping. The rate goes up by STEP_FACTOR after every step that is not
    overloaded, whether or not it passed: at low rates guestkey's p95 can sit near the limit
    (a job waiting on its reservation's lock is picked up by the worker's one-second poll),
    and that is no reason to stop looking higher. An overloaded rate is run again, ATTEMPTS
    times in all (a few seconds of the machine's other load look the same); overloaded every
    time, the stepping ends, with one step between it and the rate below when that one
    passed."""

    def __init__(self, target: System, first_rate: float = FIRST_RATE) -> None:
        self.target = target
        self.first_rate = first_rate
        self.steps: list[Step] = []
        self.failures = 0  # runs of the current rate that were overloaded
        self.bisecting = False  # the last step is the one in between: the stepping is over

    def next_rate(self) -> float | None:
        if not self.steps:
            return self.first_rate
        last = self.steps[-1]
        if self.bisecting or len(self.steps) >= MAX_STEPS:
            return None
        if not last.overloaded:
            self.failures = 0
            return last.rate * STEP_FACTOR
        self.failures += 1
        if self.failures < ATTEMPTS:
            return last.rate
        below = last.rate / STEP_FACTOR
        if not any(step.passed and math.isclose(step.rate, below) for step in self.steps):
            return None
        self.bisecting = True
        return math.sqrt(below * last.rate)

    def run_next(self) -> bool:
        """Run the next step; False when the stepping is over."""
        rate = self.next_rate()
        if rate is None:
            return False
        self.steps.append(step(self.target, rate))
        return True


def capacities(steppers: list[Stepper]) -> list[Capacity]:
    """The systems take turns, a step each, so drift in the machine's speed (its other load)
    over the minutes of the stepping reaches them all alike."""
    for stepper in steppers:
        say(f"e2e ({stepper.target.name}): capacity, stepping from {stepper.first_rate:.1f}/s")
        # Unmeasured: first connections, templates, caches.
        step(stepper.target, FIRST_RATE, count=WARMUP, label="warm-up")
    going = True
    while going:
        going = False
        for stepper in steppers:
            going |= stepper.run_next()
    return [Capacity(stepper.steps) for stepper in steppers]


def grid_rate_below(rate: float) -> float:
    """The highest rate of the stepping's grid (FIRST_RATE x STEP_FACTOR^k) at most `rate`."""
    if rate <= FIRST_RATE:
        return FIRST_RATE
    return FIRST_RATE * STEP_FACTOR ** math.floor(math.log(rate / FIRST_RATE, STEP_FACTOR))


# --- the benchmark ---------------------------------------------------------------------------


@dataclass
class Today:
    """Today's capacity (guestkey at the baseline commit), or why it could not be measured."""

    capacity: Capacity | None
    label: str
    why: str = ""


def run() -> list[Row]:
    with system("reference inline", reference=True) as reference:
        reference_burst = burst(reference)
        reference_capacity = None
        if REFERENCE_CAPACITY:
            first_rate = grid_rate_below(reference_burst.rate / 2)
            (reference_capacity,) = capacities([Stepper(reference, first_rate)])
        reference_once = reference.exactly_once()
    # The burst on a fresh system, as the reference's is: after the capacity stepping, the
    # fake Seam holds thousands of grants and spends twice its CPU per reservation on the
    # same two cores, which lengthens the burst.
    with system("serve") as serve:
        serve_burst = burst(serve)
        serve_once = serve.exactly_once()
        burst_rss = serve.rss_mib()
    with system("serve (capacity)") as stepped:
        serve_capacity, today = capacity_against_today(stepped)
        burst(stepped)  # for memory: RSS after the stepping and a burst, in one process
        stepped_once = stepped.exactly_once()
        rss = max(burst_rss, stepped.rss_mib())
    with system("api + worker", split=True) as split:
        split_burst = burst(split)
        split_once = split.exactly_once()
    return [
        *cost_rows(serve_burst, split_burst, reference_burst),
        *capacity_rows(serve_capacity, today, reference_capacity),
        *burst_rows(serve_burst, split_burst, reference_burst),
        once_row(
            {"serve": serve_once, "serve (capacity)": stepped_once, "api + worker": split_once},
            reference_once,
            sent={
                "serve": len(serve.sent),
                "serve (capacity)": len(stepped.sent),
                "api + worker": len(split.sent),
            },
            reference_sent=len(reference.sent),
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


def capacity_against_today(serve: System) -> tuple[Capacity, Today]:
    """`serve`'s capacity, and today's: guestkey at BENCH_BASELINE_COMMIT, up at the same time
    on its own database, fake Seam and mailbox, the two stepped in turns."""
    with baseline_checkout() as checkout, contextlib.ExitStack() as stack:
        today = Today(None, checkout.commit, checkout.why)
        baseline: System | None = None
        if checkout.root is not None:
            today.label = f"today's ({checkout.commit})"
            try:
                baseline = stack.enter_context(
                    system(f"baseline {checkout.commit} serve", root=checkout.root)
                )
            except RuntimeError as error:  # its serve would not start here
                today.why = f"guestkey at {checkout.commit} did not start: {error}"[:500]
        if baseline is None:
            (serve_capacity,) = capacities([Stepper(serve)])
        else:
            serve_capacity, today.capacity = capacities([Stepper(serve), Stepper(baseline)])
    return serve_capacity, today


def cost_rows(serve: Burst, split: Burst, reference: Burst) -> list[Row]:
    def cpu(result: Burst) -> str:
        return (
            f"{result.ms_per_reservation('system'):.1f} ms "
            f"(+{result.ms_per_reservation('PostgreSQL'):.1f} ms PostgreSQL)"
        )

    def ratio(result: Burst, *groups: str) -> float:
        ours = sum(result.ms_per_reservation(group) for group in groups)
        theirs = sum(reference.ms_per_reservation(group) for group in groups)
        return ours / theirs if theirs else float("nan")

    def with_postgres(result: Burst) -> str:
        both = result.ms_per_reservation("system") + result.ms_per_reservation("PostgreSQL")
        return f"{both:.1f} ms"

    headline = ratio(serve, "system")
    rows = [
        Row(
            "cost: CPU per delivered reservation (serve)",
            cpu(serve),
            cpu(reference),
            headline,
            f"<= {COST_TARGET}x",
            headline <= COST_TARGET and serve.complete,
        ),
        Row(
            "cost: the same, PostgreSQL included (serve)",
            with_postgres(serve),
            with_postgres(reference),
            ratio(serve, "system", "PostgreSQL"),
            "(info)",
        ),
        Row(
            "cost: CPU per delivered reservation (api + worker)",
            cpu(split),
            cpu(reference),
            ratio(split, "system"),
            "(info)",
        ),
    ]
    rows[0].notes.append(
        "cost: CPU seconds from the first PUT of the burst to the last email, per delivered "
        "reservation; guestkey's processes vs bench/reference_inline.py's, PostgreSQL's backends "
        "of each one's database (and the server's own processes) in brackets. Fake Seam: "
        f"serve {serve.ms_per_reservation('fake Seam'):.1f} ms, "
        f"reference {reference.ms_per_reservation('fake Seam'):.1f} ms per reservation."
    )
    return rows


def capacity_rows(serve: Capacity, today: Today, reference: Capacity | None) -> list[Row]:
    title = f"capacity: highest rate with e2e p95 <= {P95_LIMIT_MS / 1000:g} s (serve)"
    if today.capacity is None:
        row = Row(title, serve.figure(), "-", None, f">= {CAPACITY_TARGET}x today's")
        row.notes.append(f"capacity: no today's reference ({today.label}): {today.why}")
    else:
        baseline = today.capacity
        ratio = serve.rate / baseline.rate if baseline.rate else None
        row = Row(
            title,
            serve.figure(),
            f"{baseline.figure()} {today.label}",
            ratio,
            f">= {CAPACITY_TARGET}x",
            ratio is not None and ratio >= CAPACITY_TARGET,
        )
        row.notes.append(f"capacity, {today.label}: {baseline.describe()}")
    row.notes.append(f"capacity, guestkey serve: {serve.describe()}")
    if reference is None:
        return [row]
    info = Row("capacity: the same, inline reference", reference.figure(), "-", None, "(info)")
    info.notes.append(f"capacity, inline reference: {reference.describe()}")
    return [row, info]


def burst_rows(serve: Burst, split: Burst, reference: Burst) -> list[Row]:
    def figure(result: Burst) -> str:
        return f"{result.arrivals.summary()}; {result.rate:.1f}/s"

    return [
        Row(
            f"e2e {label}: burst {RESERVATIONS} @{CONCURRENCY} p50 / p95 / max; rate",
            figure(result),
            figure(reference),
            None,
            "(info)",
        )
        for label, result in (("serve", serve), ("api + worker", split))
    ]


def once_row(
    guestkey: dict[str, Arrivals],
    reference: Arrivals,
    *,
    sent: dict[str, int],
    reference_sent: int,
) -> Row:
    def figure(arrivals: Arrivals, count: int) -> str:
        return f"{arrivals.delivered}/{count}, {arrivals.duplicates} dup"

    return Row(
        "e2e: every reservation delivered, once (" + "; ".join(guestkey) + ")",
        "; ".join(figure(arrivals, sent[name]) for name, arrivals in guestkey.items()),
        figure(reference, reference_sent),
        None,
        "all, once",
        all(
            arrivals.delivered == sent[name] and arrivals.duplicates == 0
            for name, arrivals in guestkey.items()
        ),
    )
