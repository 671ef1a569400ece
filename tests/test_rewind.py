"""A run taken up again from a checkpoint: its points from there on are dropped, once.

``Store.rewind_metrics`` cuts every series of a run at the first point at a step or
later, wherever that falls: in the loose rows, inside a packed chunk, or before
every point. The points after the cut are logged again by the generation that goes on
from the checkpoint, so the series must read afterwards exactly as if the first
generation had never passed that step, views and their cached EMA included.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.server.chunks import CHUNK_POINTS
from engine.server.store import Store
from engine.server.views import EmaCache, series_view

RUN = "abc234"


def _store(path: Path) -> Store:
    store = Store(path)
    store.create_run({"id": RUN, "name": "a", "workload": "synthetic", "config": {},
                      "state": "queued", "device": "cpu", "cwd": "/",
                      "created": time.time(), "released": False}, "created")
    return store


def _points(first: int, last: int, seed: int, t0: float) -> list[list[Any]]:
    """Two keys a step, as a training loop logs them (loss every step, acc every 10th)."""
    rng = random.Random(seed)
    out: list[list[Any]] = []
    for step in range(first, last):
        out.append([step, "loss", 3.0 * math.exp(-step / 900) + rng.random() * 0.1,
                    t0 + step * 0.01])
        if step % 10 == 0:
            out.append([step, "acc", rng.random(), t0 + step * 0.01])
    return out


def _add(store: Store, points: list[list[Any]], batch: int) -> None:
    for start in range(0, len(points), batch):
        store.add_metrics(RUN, points[start : start + batch], start + 1, None)


def _series(store: Store) -> list[tuple[int, str, float]]:
    return sorted((int(p[0]), str(p[1]), float(p[2])) for p in store.all_metrics(RUN))


@settings(max_examples=25, deadline=None)
@given(
    total=st.integers(1, 3 * CHUNK_POINTS + 300),
    cut=st.integers(0, 3 * CHUNK_POINTS + 400),
    batch=st.sampled_from([1, 97, 1500]),
    sealed=st.booleans(),
)
def test_a_rewind_leaves_exactly_the_points_before_the_step(
    tmp_path_factory: Any, total: int, cut: int, batch: int, sealed: bool,
) -> None:
    store = _store(tmp_path_factory.mktemp("s") / "s.sqlite")
    first = _points(0, total, seed=1, t0=1.7e9)
    _add(store, first, batch)
    if sealed:  # the run failed: the daemon packed its last points into a short chunk
        store.seal_metrics(RUN)
    dropped = store.rewind_metrics(RUN, cut)
    kept = [p for p in first if p[0] < cut]
    assert dropped == len(first) - len(kept)
    assert _series(store) == sorted((p[0], p[1], p[2]) for p in kept)
    assert store.metric_count(RUN) == len(kept)
    last = {key: v for _, key, v, _ in kept}  # the newest value of each key
    assert store.last_values(RUN) == last
    # The next generation logs from the cut on (other values: a GPU need not replay
    # bit for bit); the series reads as if the first had stopped at the cut.
    again = _points(cut, total + 50, seed=2, t0=1.8e9)
    _add(store, again, batch)
    store.seal_metrics(RUN)
    assert _series(store) == sorted((p[0], p[1], p[2]) for p in kept + again)
    assert store.rewind_metrics(RUN, total + 50) == 0  # nothing at or past the end
    store.close()


def test_a_view_after_a_rewind_is_the_view_of_a_run_that_never_passed_the_step(
    tmp_path: Path,
) -> None:
    """The view's EMA states are cached per chunk: one cut and written again, or a new
    one where a dropped one was, must not be read with the state of the old."""
    store = _store(tmp_path / "a.sqlite")
    cache = EmaCache()
    first = _points(0, 5 * CHUNK_POINTS, seed=1, t0=1.7e9)
    _add(store, first, 500)

    def view(s: Store, c: EmaCache) -> dict[str, Any]:
        # Zoomed on the end: the chunks before are passed over with their cached states.
        return series_view(s.points, c, s.rid(RUN), "loss", 64, lo=4.5 * CHUNK_POINTS,
                           hi=5 * CHUNK_POINTS, smoothing=0.999)

    view(store, cache)  # every sealed chunk's EMA state is cached now
    cut = 2 * CHUNK_POINTS  # steps are indices here: the chunks after are written again
    store.rewind_metrics(RUN, cut)
    again = _points(cut, 5 * CHUNK_POINTS, seed=2, t0=1.8e9)
    _add(store, again, 500)
    fresh = _store(tmp_path / "b.sqlite")
    _add(fresh, [p for p in first if p[0] < cut] + again, 500)
    assert view(store, cache) == view(fresh, EmaCache())
    store.close()
    fresh.close()
