"""How long a burst of runs started at once takes until every one of them trains.

A sweep, a queue's turn or a PBT round starts many runs together. With the warm
pool's fork server every one of them is forked with torch already imported; without
it (``TRAINTOP_WARM_POOL=0``) each imports torch itself, all at once, on the same
cores. On a fresh engine each, pool on then off, one run is started first (it
starts the pool; with the pool on, the bench waits until the server is ready), then
N synthetic CPU runs are asked for back to back in a queue with N slots (a GPU's
slots would queue them), and each run's startup.json says when its first step ended.

Printed per mode: the time from the first request to the median run's and to the
last run's first step, and each as a ratio to the pool-off figure measured in the
same run, with a cold ``python -c "import torch"`` timed beside them. "pool fresh"
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fork_latency import import_torch_s, pool_ready, startup, wait_for

from engine.client.client import Client
from engine.rundir.paths import StatePaths

RUN = ["steps=200", "sleep=0.01"]


def burst(warm: bool, runs: int, fresh: bool = False) -> list[float]:
    """Seconds from the first request to each run's first step, in the order asked;
    ``fresh``: asked of a daemon that has started nothing yet (its pool not started)."""
    home = Path(tempfile.mkdtemp(prefix="tt-burst-"))
    os.environ["TRAINTOP_HOME"] = str(home)
    os.environ["TRAINTOP_WARM_POOL"] = "1" if warm else "0"
    os.environ["TRAINTOP_CPU_SLOTS"] = str(runs)  # the queue's slots, not the cores, limit
    paths = StatePaths(home)
    try:
        with Client(paths).connect(autostart=True) as client:
            client.call("queue_set", name="burst", parallel=runs)
            if not fresh:
                first = client.call("start", workload="synthetic", overrides=["steps=3"],
                                    device="cpu", cwd="/")["id"]
                startup(paths, first, 1)
                if warm:
                    wait_for(lambda: pool_ready(paths), "the fork server")
            asked = time.time()
            ids = [client.call("start", workload="synthetic", cwd="/", queue="burst",
                               device="cpu", overrides=[*RUN, f"seed={n}"])["id"]
                   for n in range(runs)]
            took = [startup(paths, run_id, 1)["first_step"] - asked for run_id in ids]
            for run_id in ids:
                client.call("kill", run=run_id, grace=1)
            client.call("shutdown")
    finally:
        time.sleep(0.5)
        shutil.rmtree(home, ignore_errors=True)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    modes = {"pool on": (True, False), "pool fresh": (True, True), "pool off": (False, False)}
    figures: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    baseline: list[float] = []
    for _ in range(args.reps):  # interleaved, so load drifts hit every mode alike
        for mode, (warm, fresh) in modes.items():
            baseline.append(import_torch_s())
            took = burst(warm, args.runs, fresh)
            figures[mode].append((statistics.median(took), max(took)))
    cold = {k: statistics.median(v) for k, v in zip(
        ("median", "last"), zip(*figures["pool off"], strict=True), strict=True)}
    print(f"{args.runs} synthetic runs asked for at once, {os.cpu_count()} cores; "
          f"cold import torch {statistics.median(baseline):.2f} s (median of {len(baseline)})")
    print(f"{'mode':<10} {'median run':>12} {'last run':>10} {'x off (median)':>15} "
          f"{'x off (last)':>13}")
    for mode, rows in figures.items():
        median = statistics.median(r[0] for r in rows)
        last = statistics.median(r[1] for r in rows)
        print(f"{mode:<10} {median:>10.2f} s {last:>8.2f} s {median / cold['median']:>15.2f} "
              f"{last / cold['last']:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
