"""The chart's time axes: seconds since each run's first point, and the wall clock.

The views come from a real store (sealed chunks and the points not yet in one); the
labels are checked against the local clock as ``time.localtime`` reads it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.server.chunks import CHUNK_POINTS
from engine.server.store import Store
from engine.server.views import EmaCache, series_view
from tests.test_store_scale import _run
from tui.chart_view import ChartView
from tui.time_axis import axis_ticks, format_duration, x_text
from tui.view_memory import SavedView

T0 = 1.795e9  # a run started at this unix time, another three hours later
STEPS = 2 * CHUNK_POINTS + 100  # two sealed chunks, and loose points after them


def two_runs(tmp_path: Path) -> tuple[Store, int, int]:
    """Run a logs ``loss`` every second from T0 and ``val_loss`` every tenth second from
    T0 + 50; run b logs ``loss`` every half second from T0 + 3 h."""
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("aaa222", "a"), "created")
    store.create_run(_run("bbb333", "b"), "created")
    a = [[s, "loss", 1.0 / (s + 1), T0 + s] for s in range(STEPS)]
    a += [[s, "val_loss", 2.0 / (s + 1), T0 + s] for s in range(50, STEPS, 10)]
    store.add_metrics("aaa222", sorted(a, key=lambda p: p[3]), 1, None)
    store.add_metrics("bbb333", [[s, "loss", 0.5, T0 + 3 * 3600 + s / 2] for s in range(STEPS)],
                      1, None)
    return store, store.rid("aaa222"), store.rid("bbb333")


def test_elapsed_is_counted_from_each_runs_first_point_of_any_metric(tmp_path: Path) -> None:
    store, a, b = two_runs(tmp_path)
    cache = EmaCache()
    assert store.points.first_time(a) == T0 and store.points.first_time(b) == T0 + 3 * 3600

    def view(run: int, key: str, axis: str, lo: float | None = None,
             hi: float | None = None) -> dict[str, object]:
        return series_view(store.points, cache, run, key, 50, axis, lo, hi)

    assert view(a, "loss", "elapsed")["extent"] == [0.0, STEPS - 1.0]
    # b started three hours later and steps twice as fast: on top of a, half as wide
    assert view(b, "loss", "elapsed")["extent"] == [0.0, (STEPS - 1) / 2]
    assert view(b, "loss", "time")["extent"] == [T0 + 3 * 3600, T0 + 3 * 3600 + (STEPS - 1) / 2]
    # val_loss came 50 s after the run's first point, and is drawn there
    last_val = max(range(50, STEPS, 10))
    assert view(a, "val_loss", "elapsed")["extent"] == [50.0, float(last_val)]
    # a window in seconds since the start: the points logged then, from a chunk and loose
    for lo, hi in ((100.0, 199.0), (2 * CHUNK_POINTS + 10.0, 2 * CHUNK_POINTS + 99.0)):
        zoomed = view(a, "loss", "elapsed", lo, hi)
        buckets = zoomed["buckets"]
        assert isinstance(buckets, list) and sum(bk[4] for bk in buckets) == hi - lo + 1
        assert max(bk[2] for bk in buckets) == 1.0 / (lo + 1)  # its first point's loss
        assert zoomed["range"] == [lo, hi]


def test_duration_labels_fall_on_round_durations() -> None:
    ticks = axis_ticks("elapsed", 0.0, 5400.0, 6)
    assert [label for _, label in ticks] == ["0", "15m", "30m", "45m", "1h", "1h15m", "1h30m"]
    assert [label for _, label in axis_ticks("elapsed", 0.0, 100.0, 5)] == [
        "0", "30s", "1m", "1m30s"]
    assert format_duration(2 * 86400 + 6 * 3600 + 59) == "2d6h"
    assert format_duration(3725.4, precise=True) == "1h2m5s" and format_duration(-90) == "-1m30s"
    assert x_text("elapsed", 3725.4, 120.0) == "1h2m"  # a column spans minutes: no seconds
    assert x_text("step", 41.9, 1.0) == "41"


@pytest.mark.parametrize(("span", "step_minutes"), [(3600.0, 10), (6 * 3600.0, 60)])
def test_clock_labels_fall_on_whole_minutes_of_the_local_day(
    span: float, step_minutes: int
) -> None:
    start = T0 + 17.3
    ticks = axis_ticks("time", start, start + span, 6)
    assert len(ticks) >= 5
    for tick, label in ticks:
        local = time.localtime(tick)
        assert local.tm_sec == 0 and (local.tm_hour * 60 + local.tm_min) % step_minutes == 0
        assert label == time.strftime("%H:%M", local)
    seconds = axis_ticks("time", start, start + 60, 6)
    assert all(len(label) == 8 for _, label in seconds)  # 14:05:30: under a minute apart


def test_x_steps_through_the_three_axes_and_an_older_saved_view_is_read() -> None:
    view = ChartView()
    assert [view.axis, (v := view.next_axis()).axis, (w := v.next_axis()).axis,
            w.next_axis().axis] == ["step", "elapsed", "time", "step"]
    assert ChartView(axis="sideways").axis == "step"
    assert SavedView.from_wire({"x_by_time": True}).axis == "time"  # saved before 'elapsed'
    assert SavedView.from_wire({"axis": "elapsed", "x_by_time": True}).axis == "elapsed"
    wrong = SavedView.from_wire({"axis": "sideways"})
    assert wrong.axis == "step" and wrong.problems == ("axis",)
