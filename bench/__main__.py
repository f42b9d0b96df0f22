"""`python -m bench [e2e|intake|api|scale|profile ...]`: guestkey's performance benchmarks.

With no argument it runs all four (e2e — cost, capacity and memory —, intake, api, scale) and
prints one table: benchmark, figure, the reference measured in the same run, ratio, target, met.
The five targets: 1. cost (CPU per delivered reservation against an inline reference), 2.
capacity (the highest rate with end-to-end p95 <= 1 s, against guestkey at a baseline commit),
3. webhook intake, 4. the reservations API (each against a minimal reference app), 5. scale of
state and memory. Everything it needs (its own databases on BENCH_DATABASE_URL's server,
`guestkey serve` from this checkout and from a temporary git worktree of BENCH_BASELINE_COMMIT,
the fake Seam, SMTP servers, the reference apps, wrk) it starts itself and stops afterwards.
`profile` (not in the default run) samples `guestkey serve` with py-spy under webhook load.
See bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from bench.common import LOG_DIR, Row, ensure_wrk, machine, say

BENCHMARKS = ("e2e", "intake", "api", "scale")


def _runner(name: str) -> Callable[[], list[Row]]:
    if name == "intake":
        from bench import intake

        return intake.run
    if name == "e2e":
        from bench import e2e

        return e2e.run
    if name == "api":
        from bench import api

        return api.run
    from bench import scale

    return scale.run


def table(rows: list[Row]) -> str:
    header = ("benchmark", "figure", "reference", "ratio", "target", "met?")
    cells = [
        (
            row.benchmark,
            row.figure,
            row.reference,
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
            row.target,
            "-" if row.met is None else ("yes" if row.met else "NO"),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([fmt(header), rule, *(fmt(line) for line in cells)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "benchmarks",
        nargs="*",
        help=f"any of {', '.join(BENCHMARKS)}, memory (measured by e2e), profile; default: all",
    )
    parser.add_argument("--api-only", action="store_true", help="profile: --no-worker")
    args = parser.parse_args(argv)
    unknown = set(args.benchmarks) - {*BENCHMARKS, "memory", "profile"}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    chosen = [("e2e" if name == "memory" else name) for name in args.benchmarks] or list(BENCHMARKS)
    if "profile" in chosen:
        from bench import profile

        ensure_wrk()
        profile.run(worker=not args.api_only)
        return 0
    ensure_wrk()
    started = time.monotonic()
    rows: list[Row] = []
    for name in dict.fromkeys(chosen):
        say(f"--- {name} ---")
        rows += _runner(name)()
    info = machine()
    print()
    print(
        f"guestkey benchmarks — {info['cpus']} CPUs ({info['cpu']}), {info['memory']} RAM, "
        f"PostgreSQL {info['postgresql']}, Python {info['python']}; "
        f"{time.monotonic() - started:.0f} s; logs in {LOG_DIR}"
    )
    print(table(rows))
    notes = [note for row in rows for note in row.notes]
    if notes:
        print()
        print("\n".join(f"- {note}" for note in notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
