"""`python -m bench profile`: where `guestkey serve` spends its CPU under webhook intake load.

Runs wrk against `/webhooks/seam` (as the intake benchmark does) while `py-spy record` samples
the guestkey process (all threads, idle frames left out), then prints the functions with the
most samples, inclusive and self, and the collapsed stacks file (for speedscope/flamegraph).
Not part of the default `make bench` run.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from bench.common import LOG_DIR, VENV_BIN, guestkey_serve, say, scratch_database
from bench.intake import CONNECTIONS, PREPARED, signed_webhooks
from bench.load import wrk_run

SECONDS = 15


def summarise(collapsed: Path, top: int = 25) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[-1] for frame in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    lines = [f"{total} samples"]
    lines.append("-- inclusive --")
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines.append("-- self --")
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def run(worker: bool = True) -> None:
    py_spy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    with scratch_database("profile") as url, guestkey_serve(url, worker=worker) as guestkey:
        port = guestkey.port
        requests = signed_webhooks(port, PREPARED)
        out = LOG_DIR / f"profile-{'worker' if worker else 'api'}.collapsed"
        recorder = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(guestkey.pid),
                "--duration",
                str(SECONDS - 2),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def load_run() -> None:
            result = wrk_run(
                guestkey.url + "/webhooks/seam", requests, seconds=SECONDS, connections=CONNECTIONS
            )
            say(f"profile load: {result.rps:.0f} req/s during the profile")

        load = threading.Thread(target=load_run)
        load.start()
        _, error = recorder.communicate()
        load.join()
        if recorder.returncode != 0:
            sys.exit(f"py-spy failed: {error.decode()}")
        print(summarise(out))
        print(f"collapsed stacks: {out}")
