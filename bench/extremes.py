"""What ``max:KEY`` costs a listing.  Run: ``.venv/bin/python bench/extremes.py [--runs N]``.

``traintop ls`` always asks for each run's lowest value of every metric (the BEST
column); ``-c max:acc`` or a ``max:`` condition, and the TUI's first listing, also
ask for the highest. Both come from the chunks' summaries (``vmin``/``vmax``) and the
points not yet in a chunk, a page of runs (``RUNS_PAGE``) at a time. The lowest has a
covering index (``chunks_best``); the highest reads the chunk rows. This builds a
store of N runs x M steps x K keys through the store's own batch path (the read is
what is timed, not the ingest), then times both over every page, interleaved, and
prints the highest against the lowest, the baseline, measured in the same run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

from engine.server.read_requests import RUNS_PAGE
from engine.server.store import Store

BATCH = 4096  # points per add_metrics call, as the daemon stores a tick of one run


def build(path: Path, runs: int, steps: int, keys: int) -> list[int]:
    store = Store(path)
    try:
        for n in range(runs):
            run_id = f"x{n:05d}"
            store.create_run({"id": run_id, "name": run_id, "workload": "synthetic",
                              "config": {}, "state": "finished", "released": False,
                              "device": "cpu", "cwd": "/", "created": 1.7e9 + n}, "bench")
            points = [[s, f"k{k}", 2.0 + math.sin(s + n + k), 1.7e9 + s]
                      for s in range(steps) for k in range(keys)]
            for i in range(0, len(points), BATCH):
                store.add_metrics(run_id, points[i : i + BATCH], i, points[i][0])
        return [store.rid(f"x{n:05d}") for n in range(runs)]
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.sqlite"
        started = time.perf_counter()
        rids = build(path, args.runs, args.steps, args.keys)
        points = args.runs * args.steps * args.keys
        print(f"store: {args.runs} runs x {args.steps:,} steps x {args.keys} keys = "
              f"{points:,} points, built in {time.perf_counter() - started:.0f} s")
        store = Store(path)
        pages = [rids[i : i + RUNS_PAGE] for i in range(0, len(rids), RUNS_PAGE)]
        times: dict[str, list[float]] = {"lowest": [], "highest": []}
        for _ in range(args.reps):
            for name, query in (("lowest", store.points.lowest_values),
                                ("highest", store.points.highest_values)):
                started = time.perf_counter()
                for page in pages:
                    query(page)
                times[name].append(time.perf_counter() - started)
        store.close()
    low, high = (statistics.median(times[n]) * 1000 for n in ("lowest", "highest"))
    print(f"every run's lowest of each key (baseline): {low:.1f} ms, median of {args.reps}")
    print(f"every run's highest of each key:           {high:.1f} ms ({high / low:.2f}x)")


if __name__ == "__main__":
    main()
