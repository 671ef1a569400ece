"""The store at scale: chunked series, O(keys) latest values, the v2 migration, screen views."""

from __future__ import annotations

import math
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.smoothing import DebiasedEma, ema_debiased
from engine.server.chunks import CHUNK_POINTS, decode, encode
from engine.server.store import MIGRATIONS, SCHEMA_VERSION, Store
from engine.server.views import EmaCache, series_view, tail_ema


def _run(run_id: str, name: str) -> dict[str, Any]:
    return {
        "id": run_id, "name": name, "workload": "synthetic", "config": {"lr": 0.1},
        "state": "queued", "device": "cpu", "cwd": "/", "created": time.time(),
        "released": False,
    }


def _loss_curve(n: int, seed: int = 0, start: int = 0) -> list[list[Any]]:
    rng = random.Random(seed)
    t0 = 1.7e9
    return [
        [s, "loss", 3.0 * math.exp(-s / 5000) + rng.random() * 0.1, t0 + s * 0.0123 + rng.random()]
        for s in range(start, start + n)
    ]


# Every float64, NaN and ±inf included: each comes back as it was logged.
any_float = st.floats(width=64)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**62), 2**62),
            any_float,
            st.floats(0, 4e9, allow_nan=False),
        ),
        min_size=1,
        max_size=300,
    )
)
def test_a_chunk_gives_back_every_point(points: list[tuple[int, float, float]]) -> None:
    blob, summary = encode(points)
    back = decode(blob, len(points))
    assert [s for s, _, _ in back] == [s for s, _, _ in points]
    assert all(_same(b[1], p[1]) for b, p in zip(back, points, strict=True))
    # Times keep microseconds.
    assert all(abs(b[2] - p[2]) <= 5e-7 + abs(p[2]) * 1e-15
               for b, p in zip(back, points, strict=True))
    # The summary is over what a chart draws: the finite values.
    drawn = [v for _, v, _ in points if math.isfinite(v)]
    assert (summary.vmin, summary.vmax) == ((min(drawn), max(drawn)) if drawn else (None, None))
    assert summary.step_hi == max(p[0] for p in points)


def _vm_steps(store: Store, run_id: str) -> int:
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store.db.set_progress_handler(count, 1)
    values = store.last_values(run_id)
    store.db.set_progress_handler(None, 1)
    assert set(values) == {"loss", "acc"}
    return steps


def test_latest_values_cost_the_same_for_a_short_and_a_long_run(tmp_path: Path) -> None:
    """Reading a run's latest values must not scan its points (the old query was quadratic)."""
    store = Store(tmp_path / "s.sqlite")
    costs = []
    for run_id, steps in (("short2", 1_000), ("long22", 40_000)):
        store.create_run(_run(run_id, run_id), "created")
        points = [p for s in range(steps) for p in ([s, "loss", 1.0, 1.0], [s, "acc", 0.5, 1.0])]
        store.add_metrics(run_id, points, 1, steps)
        costs.append(_vm_steps(store, run_id))
    assert costs[1] <= costs[0] + 5, costs
    assert max(costs) < 200, costs  # reading even the short run's 1,000 points costs more
    assert store.last_values("long22") == {"loss": 1.0, "acc": 0.5}


def test_a_long_run_costs_under_20_bytes_a_point(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.create_run(_run("abc234", "a"), "created")
    points = _loss_curve(100_000)
    points += [[s, "lr", 1e-3 * (1 - s / 200_000), t] for s, _, _, t in points]
    for start in range(0, len(points), 777):  # batches as a live run's ticks would bring
        store.add_metrics("abc234", points[start : start + 777], start, None)
    store.seal_metrics("abc234")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.db.execute("VACUUM")
    size = path.stat().st_size
    assert store.metric_count("abc234") == len(points)
    assert size / len(points) <= 20, f"{size / len(points):.1f} bytes a point"


def test_points_come_back_in_order_across_chunks_and_loose_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    points = _loss_curve(3 * CHUNK_POINTS + 17)
    for start in range(0, len(points), 100):
        store.add_metrics("abc234", points[start : start + 100], start, None)
    back = store.all_metrics("abc234")
    assert [(p[0], p[2]) for p in back] == [(p[0], p[2]) for p in points]
    assert store.last_metrics("abc234", "loss", 5) == [tuple(p) for p in back[-5:]]
    chunks = store.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert chunks == 3  # three full chunks; 17 points wait loose until the run ends
    store.seal_metrics("abc234")
    assert store.db.execute("SELECT count(*) FROM recent").fetchone()[0] == 0
    assert [(p[0], p[2]) for p in store.all_metrics("abc234")] == [(p[0], p[2]) for p in points]


def test_pages_stay_bounded_with_long_metric_names(tmp_path: Path) -> None:
    """5 long-named keys x 6,000 steps once overflowed the 4 MiB frame cap of one reply."""
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    keys = [f"{'x' * 190}{i}" for i in range(5)]
    store.add_metrics("abc234", [[s, k, 1.0, 1.0] for s in range(6000) for k in keys], 1, None)
    pages, cursor, total = 0, None, 0
    while True:
        page, cursor = store.metrics("abc234", start=cursor)
        assert sum(len(p[1]) + 40 for p in page) <= 1024 * 1024
        total += len(page)
        pages += 1
        if cursor is None:
            break
    assert total == 30_000 and pages > 1


def v2_store(path: Path) -> None:
    """A store as traintop wrote it at schema 2, with two finished runs and no points."""
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:2]:
        assert isinstance(script, str)
        db.executescript(script)
    db.execute("PRAGMA user_version=2")
    for rid, (run_id, name) in enumerate((("abc234", "old"), ("def567", "older"))):
        db.execute(
            "INSERT INTO runs (id, name, workload, config, state, device, cwd, created, step) "
            "VALUES (?, ?, 'synthetic', '{\"lr\": 0.1}', 'finished', 'cpu', '/', ?, 9)",
            (run_id, name, 1.0 + rid),
        )
        db.execute(
            "INSERT INTO events (run_id, time, state, reason) VALUES (?, 1.0, 'queued', 'x')",
            (run_id,),
        )
    db.commit()
    db.close()


def test_a_version_2_store_migrates_and_keeps_every_point(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    v2_store(path)
    rows = [("abc234", "loss", p[0], p[2], p[3]) for p in _loss_curve(2 * CHUNK_POINTS + 5)]
    rows += [("abc234", "acc", s, None if s % 7 == 0 else s / 10, 2e9 + s) for s in range(50)]
    rows += [("abc234", "acc", 3, 123.0, 2e9)]  # a step logged twice
    rows += [("def567", "loss", s, float(s), 1.0) for s in reversed(range(30))]
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?)",
                   rows)
    db.commit()
    db.close()

    store = Store(path)
    assert store.version == SCHEMA_VERSION
    run = store.get_run("abc234")
    assert run is not None and run["name"] == "old" and run["config"] == {"lr": 0.1}
    assert [e["reason"] for e in store.events("def567")] == ["x"]
    for run_id in ("abc234", "def567"):
        want = sorted(
            ((r[2], r[1], r[3], r[4]) for r in rows if r[0] == run_id),
            key=lambda p: (p[1], p[0]),  # v2 order: key, step, then insertion
        )
        got = store.all_metrics(run_id)
        assert [(p[0], p[1]) for p in got] == [(p[0], p[1]) for p in want]
        # v2 kept a NaN as NULL; it comes back as NaN.
        assert all(_same(g[2], math.nan if w[2] is None else w[2])
                   for g, w in zip(got, want, strict=True))
        assert all(abs(g[3] - w[3]) < 1e-6 for g, w in zip(got, want, strict=True))
    assert store.last_values("def567") == {"loss": 29.0}
    assert store.db.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'metrics'"
    ).fetchone()[0] == 0
    # New points go on after the migrated ones.
    store.add_metrics("def567", [[30, "loss", 30.0, 2.0]], 1, 31)
    assert store.all_metrics("def567")[-1] == (30, "loss", 30.0, 2.0)


def _brute_view(
    points: list[list[Any]], buckets: int, lo: float, hi: float, smoothing: float
) -> dict[int, tuple[float, float, float | None, int]]:
    smooth = ema_debiased([p[2] for p in points], smoothing)
    width = (hi - lo) / buckets
    out: dict[int, tuple[float, float, float | None, int]] = {}
    for p, sm in zip(points, smooth, strict=True):
        if p[2] is None or not lo <= p[0] <= hi:
            continue
        b = min(buckets - 1, max(0, int((p[0] - lo) / width)))
        have = out.get(b)
        out[b] = (p[2], p[2], sm, 1) if have is None else (
            min(have[0], p[2]), max(have[1], p[2]), sm, have[3] + 1)
    return out


@pytest.mark.parametrize(
    ("buckets", "zoom"), [(7, None), (200, None), (50, (1000.0, 4100.0)), (3000, (10.0, 900.0))]
)
def test_a_screen_view_matches_the_raw_points(
    tmp_path: Path, buckets: int, zoom: tuple[float, float] | None
) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    points = _loss_curve(5 * CHUNK_POINTS + 300, seed=3)
    points[100][2] = None  # a NaN loss
    for start in range(0, len(points), 500):
        store.add_metrics("abc234", points[start : start + 500], start, None)
    cache = EmaCache()
    lo, hi = zoom or (0.0, float(len(points) - 1))
    want = _brute_view(points, buckets, lo, hi, 0.9)
    rid = store.rid("abc234")
    for _ in range(2):  # the second view uses the cached EMA states
        view = series_view(store.points, cache, rid, "loss", buckets, "step",
                           zoom[0] if zoom else None, zoom[1] if zoom else None, 10, 0.9)
        got = {b[0]: (b[1], b[2], b[3], b[4]) for b in view["buckets"]}
        assert sum(c[3] for c in got.values()) == sum(c[3] for c in want.values())
        assert {b: g[:2] for b, g in got.items()} == {b: w[:2] for b, w in want.items()}
        for b, g in got.items():
            assert g[2] == pytest.approx(want[b][2], rel=1e-12)
        assert view["tail"] == [[p[0], p[2], pytest.approx(p[3])] for p in points[-10:]]
        assert view["n"] == len(points)
    assert cache.states  # sealed chunks' EMA states were kept


def test_a_screen_view_reads_few_chunks_of_a_long_series(tmp_path: Path) -> None:
    """Whole chunks inside one bucket are folded in from their summary, not unpacked."""
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    points = _loss_curve(200 * CHUNK_POINTS)
    store.add_metrics("abc234", points, 1, None)
    cache = EmaCache()
    rid = store.rid("abc234")
    series_view(store.points, cache, rid, "loss", 100, smoothing=0.9)  # warms the EMA cache
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    view = series_view(store.points, cache, rid, "loss", 100, smoothing=0.9)
    store.db.set_trace_callback(None)
    unpacked = sum(sql.startswith("SELECT data FROM chunks") for sql in statements)
    assert len(view["buckets"]) == 100
    assert unpacked <= 100  # at most the chunks that straddle a bucket edge, of 200


@pytest.mark.parametrize("weight", [0.0, 0.6, 0.9, 0.99])
def test_a_table_ema_from_the_last_points_matches_the_whole_series(
    tmp_path: Path, weight: float
) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    points = _loss_curve(3 * CHUNK_POINTS + 100, seed=5)
    store.add_metrics("abc234", points, 1, None)
    state = tail_ema(store.points, store.rid("abc234"), "loss", weight)
    assert state is not None
    ema = DebiasedEma(weight)
    ema.last, ema.num_accum = state[0], int(state[1])
    assert state[2] == points[-1][0]
    # Going on from the state gives what smoothing the whole series would.
    whole = ema_debiased([*(p[2] for p in points), 1.5], weight)[-1]
    assert ema.extend([1.5])[-1] == pytest.approx(whole, rel=1e-12)
    assert tail_ema(store.points, store.rid("abc234"), "nosuchkey", weight) is None


@pytest.mark.parametrize("page", [7, 700, CHUNK_POINTS, 100_000])
def test_column_pages_give_every_point_once(tmp_path: Path, page: int) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    points = _loss_curve(2 * CHUNK_POINTS + 50) + [[s, "acc", None, 5.0] for s in range(30)]
    store.add_metrics("abc234", points, 1, None)
    rid, cursor, got = store.rid("abc234"), None, []
    while True:
        blocks, cursor = store.points.column_page(rid, None, cursor, page)
        for block in blocks:
            got += [(s, block.key, v, t / 1e6) for s, v, t in
                    zip(block.steps, block.values, block.times_us, strict=True)]
        if cursor is None:
            break
    stored = store.all_metrics("abc234")
    # repr: NaN (the acc points) equal to NaN
    assert repr([(p[0], p[1], p[2]) for p in got]) == repr([(p[0], p[1], p[2]) for p in stored])
    assert all(abs(g[3] - s[3]) < 1e-6 for g, s in zip(got, stored, strict=True))  # to the us
    assert len(got) == len(points)
