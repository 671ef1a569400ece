"""How long a burst of runs started at once takes until every one of them trains.

A sweep, a queue's turn or a PBT round starts many runs together. With the warm
pool's fork server every one of them is forked with torch already imported; without
it (``TRAINTOP_WARM_POOL=0``) each imports torch itself, all at once, on the same
cores. On a fresh engine each, pool on then off, one run is started first (it
starts the pool; with the pool on, the bench waits until the server is ready), N
synthetic CPU runs are queued in a paused queue with N slots (a GPU's slots would
queue them) and the queue is resumed: one pass of the daemon starts them all. Each
run's startup.json says when its first step ended; a second connection pings the
daemon every 10 ms meanwhile (a daemon must answer at any moment).

Printed per mode: the time from the release to the median run's and to the last
run's first step, the slowest ping, and ratios to the pool-off figures measured in
the same run, with a cold ``python -c "import torch"`` timed beside them. "pool fresh"
asks a daemon that has started nothing yet: its server starts with the first
request, and the runs wait for it rather than import torch beside it.

    .venv/bin/python bench/burst_start.py [--runs 8] [--reps 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fork_latency import import_torch_s, pool_ready, startup, wait_for

from engine.client.client import Client
from engine.rundir.paths import StatePaths

RUN = ["steps=200", "sleep=0.01"]


def burst(warm: bool, runs: int, fresh: bool = False) -> tuple[list[float], float]:
    """Seconds from the release to each run's first step, in the order queued, and the
    daemon's slowest answer to a ping meanwhile; ``fresh``: a daemon that has started
    nothing yet (its pool not started)."""
    home = Path(tempfile.mkdtemp(prefix="tt-burst-"))
    os.environ["TRAINTOP_HOME"] = str(home)
    os.environ["TRAINTOP_WARM_POOL"] = "1" if warm else "0"
    os.environ["TRAINTOP_CPU_SLOTS"] = str(runs)  # the queue's slots, not the cores, limit
    paths = StatePaths(home)
    pings: list[float] = []
    done = threading.Event()

    def ping() -> None:
        with Client(paths).connect() as other:
            while not done.is_set():
                began = time.perf_counter()
                other.call("ping")
                pings.append(time.perf_counter() - began)
                time.sleep(0.01)

    try:
        with Client(paths).connect(autostart=True) as client:
            client.call("queue_set", name="burst", parallel=runs, paused=True)
            if not fresh:
                first = client.call("start", workload="synthetic", overrides=["steps=3"],
                                    device="cpu", cwd="/")["id"]
                startup(paths, first, 1)
                if warm:
                    wait_for(lambda: pool_ready(paths), "the fork server")
            ids = [client.call("start", workload="synthetic", cwd="/", queue="burst",
                               device="cpu", overrides=[*RUN, f"seed={n}"])["id"]
                   for n in range(runs)]
            pinger = threading.Thread(target=ping)
            pinger.start()
            released = time.time()
            client.call("queue_set", name="burst", paused=False)  # one pass starts them all
            took = [startup(paths, run_id, 1)["first_step"] - released for run_id in ids]
            done.set()
            pinger.join()
            for run_id in ids:
                client.call("kill", run=run_id, grace=1)
            client.call("shutdown")
    finally:
        done.set()
        time.sleep(0.5)
        shutil.rmtree(home, ignore_errors=True)
    return took, max(pings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    modes = {"pool on": (True, False), "pool fresh": (True, True), "pool off": (False, False)}
    figures: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
    baseline: list[float] = []
    for _ in range(args.reps):  # interleaved, so load drifts hit every mode alike
        for mode, (warm, fresh) in modes.items():
            baseline.append(import_torch_s())
            took, slowest_ping = burst(warm, args.runs, fresh)
            figures[mode].append((statistics.median(took), max(took), slowest_ping))
    off = [statistics.median(column) for column in zip(*figures["pool off"], strict=True)]
    print(f"{args.runs} synthetic runs released at once from a paused queue, "
          f"{os.cpu_count()} cores; cold import torch {statistics.median(baseline):.2f} s "
          f"(median of {len(baseline)})")
    print(f"{'mode':<10} {'median run':>12} {'last run':>10} {'slowest ping':>13} "
          f"{'x off (last)':>13} {'x off (ping)':>13}")
    for mode, rows in figures.items():
        median, last, ping = (statistics.median(column) for column in zip(*rows, strict=True))
        print(f"{mode:<10} {median:>10.2f} s {last:>8.2f} s {ping * 1000:>10.0f} ms "
              f"{last / off[1]:>13.2f} {ping / off[2]:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
