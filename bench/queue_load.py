"""What a loop of starts does to the machine, with the default queue and without a limit.

The user's case: ``for i in $(seq 100); do traintop start ...; done`` on a small
machine gave 34 workers at once and a load of 33 on 2 cores. This starts N short
synthetic runs in a loop twice on a fresh engine each time: once in the
``default`` queue (one slot per core) and once in a queue with no limit (the
baseline, as before queues), and prints for each: the most workers alive at
once, the most runnable tasks at once (/proc/loadavg's instant count: the 1-minute
average would carry one trial's load into the next), the time of one start request,
and the wall time until every run finished. Ratios are queue / no limit, measured in
the same run.

    .venv/bin/python bench/queue_load.py [--runs 40] [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil

from engine.client.client import Client
from engine.rundir.paths import StatePaths

TERMINAL = {"finished", "failed", "killed"}


def runnable() -> float:
    """Tasks running or waiting for a core now (/proc/loadavg's "R/total"; 1-minute load
    average where that cannot be read)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return os.getloadavg()[0]


def workers(home: Path) -> int:
    """Worker processes of this engine alive now (their command line names the module)."""
    count = 0
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if "engine.run.worker" in cmdline and (proc.info["environ"] or {}).get(
                "TRAINTOP_HOME"
            ) == str(home):
                count += 1
        except (psutil.Error, TypeError):
            continue
    return count


def trial(runs: int, steps: int, queue: str | None) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="tt-queue-"))
    os.environ["TRAINTOP_HOME"] = str(home)
    os.environ.pop("TRAINTOP_CPU_SLOTS", None)
    paths = StatePaths(home)
    peak = {"workers": 0, "load": 0.0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak["workers"] = max(peak["workers"], workers(home))
            peak["load"] = max(peak["load"], runnable())
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        with Client(paths).connect(autostart=True) as client:
            if queue is not None:
                client.call("queue_set", name=queue, parallel=0)
            watcher.start()
            began = time.monotonic()
            calls = []
            ids = []
            for i in range(runs):
                t0 = time.perf_counter()
                run = client.call(
                    "start", workload="synthetic", overrides=[f"steps={steps}", f"seed={i}"],
                    device="cpu", cwd="/", queue=queue,
                )
                calls.append(time.perf_counter() - t0)
                ids.append(run["id"])
            while True:
                states = {r["state"] for r in client.all_runs()}
                if states <= TERMINAL:
                    break
                time.sleep(0.5)
            wall = time.monotonic() - began
            client.call("shutdown")
    finally:
        done.set()
        shutil.rmtree(home, ignore_errors=True)
    return {"workers": peak["workers"], "load": peak["load"],
            "start_ms": statistics.median(calls) * 1000, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{args.runs} synthetic runs of {args.steps} steps, started in a loop; {cores} cores")
    base = trial(args.runs, args.steps, "unlimited")
    queued = trial(args.runs, args.steps, None)
    print(f"{'':24}{'no limit':>12}{'default queue':>16}{'ratio':>8}")
    for key, label in [("workers", "most workers at once"), ("load", "most runnable tasks"),
                       ("start_ms", "start request, ms"), ("wall_s", "all finished, s")]:
        ratio = queued[key] / base[key] if base[key] else float("nan")
        print(f"{label:24}{base[key]:>12.1f}{queued[key]:>16.1f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
