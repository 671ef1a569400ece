"""What the store's page map costs.  Run: ``.venv/bin/python bench/page_map.py``.

A store keeps SQLite's page map (``auto_vacuum=INCREMENTAL``) so that the engine can
give removed runs' room back to the disk while it runs (``bench/remove.py`` times
that). The map is kept up to date at every page the store takes: this measures
whether that slows storing points or makes the file bigger. The same points (20 runs
x 50,000 steps x 2 keys, random values, in batches of 500 steps as a tick stores
them) go through ``Store.add_metrics`` into a store with the map and one without
(made as an older store is: ``auto_vacuum=NONE`` then VACUUM), in turns, twice; the
best time of each, and the ratio.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.server.store import Store

RUNS, STEPS, KEYS, BATCH = 20, 50_000, ("loss", "acc"), 500
POINTS = RUNS * STEPS * len(KEYS)


def fill(home: Path, page_map: bool) -> tuple[float, int]:
    """Store every point; the seconds it took and the file's bytes after a checkpoint."""
    path = home / f"{'map' if page_map else 'none'}.sqlite"
    store = Store(path)
    if not page_map:
        store.db.execute("PRAGMA auto_vacuum=NONE")
        store.db.execute("VACUUM")
    assert int(store.db.execute("PRAGMA auto_vacuum").fetchone()[0]) == (2 if page_map else 0)
    ids = [f"run{n:03d}" for n in range(RUNS)]
    for run_id in ids:
        store.create_run({"id": run_id, "name": run_id, "workload": "bench", "config": {},
                          "state": "running", "device": "cpu", "cwd": "/", "created": 1.0,
                          "released": False}, "made by the bench")
    noise = random.Random(0)
    started = time.perf_counter()
    for first in range(0, STEPS, BATCH):
        for run_id in ids:
            store.add_metrics(run_id, [[s, k, noise.random(), 1.7e9 + s]
                                       for s in range(first, first + BATCH) for k in KEYS],
                              0, None)
    took = time.perf_counter() - started
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return took, path.stat().st_size


def main() -> int:
    times: dict[bool, list[float]] = {False: [], True: []}
    sizes: dict[bool, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for turn in range(2):
            for page_map in (False, True):
                home = Path(tmp) / f"{turn}"
                home.mkdir(exist_ok=True)
                took, sizes[page_map] = fill(home, page_map)
                times[page_map].append(took)
    plain, mapped = min(times[False]), min(times[True])
    print(f"{POINTS:,} points stored, best of 2 each")
    print(f"without the page map  {plain:.2f} s ({POINTS / plain:,.0f} points/s), "
          f"{sizes[False] / POINTS:.2f} bytes a point")
    print(f"with the page map     {mapped:.2f} s ({POINTS / mapped:,.0f} points/s), "
          f"{sizes[True] / POINTS:.2f} bytes a point")
    grown = sizes[True] / sizes[False]
    print(f"ratio                 time x{mapped / plain:.3f}, size x{grown:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
