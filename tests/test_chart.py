"""The loss chart: its maths against hand computations and brute force, and the widget
drawn by a real Textual app under run_test()."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from hypothesis import given
from hypothesis import strategies as st
from textual.app import App, ComposeResult
from textual.geometry import Region

from tui.chart_feed import ViewRequest
from tui.chart_math import (
    bucket_edges,
    downsample_minmax,
    ema_debiased,
    format_log_tick,
    format_tick,
    inlier_range,
    log_ticks,
    nice_ticks,
)
from tui.chart_view import SMOOTHING_STEPS, ChartView
from tui.widgets.loss_chart import GUTTER, LossChart, Series

T = TypeVar("T")
BRAILLE = {chr(c) for c in range(0x2801, 0x2900)}


# --- chart_math -------------------------------------------------------------------------


def test_ema_matches_hand_computation() -> None:
    w = 0.5
    # last: 0.5*0+0.5*4=2 -> /0.5 = 4; 0.5*2+0.5*2=2 -> /0.75; 0.5*2+0.5*8=5 -> /0.875
    assert ema_debiased([4.0, 2.0, 8.0], w) == [4.0, 2.0 / 0.75, 5.0 / 0.875]


def test_ema_is_tensorboards_definition() -> None:
    values = [3.0, 2.5, 2.7, 1.9, 2.2, 1.4]
    w = 0.9
    last, expected = 0.0, []
    for count, v in enumerate(values, start=1):
        last = last * w + (1 - w) * v
        expected.append(last / (1 - w**count))
    smoothed = ema_debiased(values, w)
    assert smoothed == expected
    assert smoothed[0] == values[0]  # debiasing: no pull towards zero at the start


def test_ema_gaps_pass_through_without_advancing() -> None:
    values = [2.0, None, math.nan, math.inf, 4.0]
    smoothed = ema_debiased(values, 0.5)
    assert smoothed[1:4] == [None, None, None]
    assert smoothed[4] == ema_debiased([2.0, 4.0], 0.5)[1]


def test_ema_weight_zero_is_identity() -> None:
    values = [1.0, 5.0, None, -2.0]
    assert ema_debiased(values, 0.0) == values


def brute_force(
    xs: list[float], ys: list[float | None], x_lo: float, x_hi: float, columns: int
) -> list[tuple[float, float] | None]:
    edges = bucket_edges(x_lo, x_hi, columns)
    out: list[tuple[float, float] | None] = []
    for c in range(columns):
        last = c == columns - 1
        vals = [
            y
            for x, y in zip(xs, ys, strict=True)
            if y is not None and edges[c] <= x and (x < edges[c + 1] or (last and x <= x_hi))
        ]
        out.append((min(vals), max(vals)) if vals else None)
    return out


points = st.lists(
    st.tuples(
        st.floats(-1e3, 1e3, allow_nan=False),
        st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
    ),
    max_size=300,
)


@given(points, st.integers(1, 50), st.floats(-1.2e3, 1.2e3), st.floats(0.001, 2.5e3))
def test_downsample_matches_brute_force(
    pts: list[tuple[float, float | None]], columns: int, x_lo: float, span: float
) -> None:
    pts.sort(key=lambda p: p[0])
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    buckets = downsample_minmax(xs, ys, x_lo, x_lo + span, columns)
    assert len(buckets) == columns
    assert buckets == brute_force(xs, ys, x_lo, x_lo + span, columns)


def test_downsample_slices_the_visible_range() -> None:
    xs = [float(x) for x in range(1000)]
    ys: list[float | None] = [float(x) for x in range(1000)]
    buckets = downsample_minmax(xs, ys, 100.0, 199.0, 10)
    assert len(buckets) == 10
    assert buckets[0] == (100.0, 109.0)
    assert buckets[-1] == (190.0, 199.0)
    assert downsample_minmax(xs, ys, 2000.0, 3000.0, 5) == [None] * 5
    assert len(downsample_minmax(xs, ys, 0.0, 999.0, 3)) == 3  # never more than columns


def test_ticks_are_round_and_inside() -> None:
    ticks = nice_ticks(0.23, 3.61, 4)
    assert ticks == [1.0, 2.0, 3.0]
    assert all(0.23 <= t <= 3.61 for t in ticks)
    assert nice_ticks(5.0, 5.0, 4) == [5.0]
    assert log_ticks(-3.2, 1.1, 5) == [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    assert [format_log_tick(t) for t in log_ticks(-4.5, -2.5, 3)] == ["1e-4", "1e-3"]


# --- the widget under a real app --------------------------------------------------------


class ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LossChart()


def run_chart(size: tuple[int, int], scenario: Callable[[LossChart], T]) -> tuple[T, list[str]]:
    """Run `scenario` on a mounted chart, then return its result and the rendered lines."""

    async def main() -> tuple[T, list[str]]:
        app = ChartApp()
        async with app.run_test(size=size) as pilot:
            chart = app.query_one(LossChart)
            result = scenario(chart)
            await pilot.pause()
            return result, [chart.render_line(y).text for y in range(chart.size.height)]

    return asyncio.run(main())


def decay(n: int, scale: float = 1.0) -> tuple[list[float], list[float | None]]:
    xs = [float(x) for x in range(1, n + 1)]
    return xs, [scale * (3.0 * math.exp(-x / n * 4) + 0.2 + 0.1 * math.sin(x)) for x in xs]


def test_curves_legend_and_fork_marker() -> None:
    def scenario(chart: LossChart) -> None:
        xs, ys = decay(500)
        fork_xs, fork_ys = decay(500, 0.8)
        chart.set_data(
            [
                Series("a1b2c3 lr=3e-4", xs, ys),
                Series("d4e5f6 lr=1e-3", fork_xs[249:], fork_ys[249:], emphasis=True),
            ],
            [(250.0, "fork d4e5f6")],
            "step",
        )

    _, lines = run_chart((80, 24), scenario)
    assert any(c in BRAILLE for line in lines for c in line)
    assert "a1b2c3 lr=3e-4" in lines[0] and "d4e5f6 lr=1e-3" in lines[0]
    assert "fork d4e5f6" in lines[1]
    plot_w = 80 - GUTTER
    col = GUTTER + int((250.0 - 1.0) / (500.0 - 1.0) * plot_w)
    column = [line[col] for line in lines[1:-1]]
    assert column.count("┊") >= len(column) // 2  # the curve may cross it
    assert "step" in lines[-1]


def test_log_scale_changes_the_y_labels() -> None:
    xs = [float(x) for x in range(1, 2001)]
    ys: list[float | None] = [10.0 ** (1 - 4 * x / 2000) for x in xs]  # 10 down to 1e-3
    ys[5] = -1.0  # dropped on a log scale

    def labels(log_y: bool) -> list[str]:
        def scenario(chart: LossChart) -> None:
            chart.set_data([Series("run", xs, ys)], [], "step")
            chart.log_y = log_y

        _, lines = run_chart((80, 24), scenario)
        return [line[: GUTTER - 1].strip() for line in lines[1:-1] if line[: GUTTER - 1].strip()]

    linear, log = labels(False), labels(True)
    assert linear != log
    assert {"0.01", "0.1", "1"} <= set(log)


def test_values_far_outside_the_rest_are_left_out_of_the_range_and_a_curves_start_is_not(
) -> None:
    # A loss curve's own fall from 10 to 0.1 is all kept; so are a few seeds' spread.
    fall = [0.1 + 10 * math.exp(-t / 25) for t in range(250)]
    assert inlier_range(fall) is None
    assert inlier_range([v * k for v in fall for k in (1.0, 1.3, 0.7)]) is None
    # A diverged run's 1e+28 goes (both ends), and what is left is the range.
    blown = [*fall, 1e28, 3e27, -1e20]
    assert inlier_range(blown) == (min(fall), max(fall))
    assert inlier_range([1.0] * 100 + [5.0]) is None  # no spread: nothing to judge by
    assert inlier_range([*fall[:40], 1e28]) is None  # too few values to judge


def axis_labels(lines: list[str]) -> list[float]:
    """The y axis's labels, as numbers (1M: 1e6), top first."""
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}
    texts = [line[: GUTTER - 1].strip() for line in lines[1:-1]]
    return [float(t[:-1]) * scale[t[-1]] if t[-1] in scale else float(t) for t in texts if t]


def test_a_diverged_runs_curve_and_a_spike_leave_the_y_axis_to_the_others() -> None:
    xs, ys = decay(500)
    spiked = list(ys)
    spiked[400] = 1e6  # one point far off (the raw curve: smoothing off)
    blown = [v if x < 300 else 1e3 for x, v in zip(xs, ys, strict=True)]

    def draw(series: list[Series], all_y: bool = False) -> list[str]:
        def scenario(chart: LossChart) -> None:
            chart.set_data(series, [], "step")
            chart.view = replace(chart.view, smoothing=0.0, all_y=all_y)

        return run_chart((80, 24), scenario)[1]

    plain = draw([Series("a", xs, ys)])
    assert max(axis_labels(plain)) < 5 and "outliers off the chart" not in "".join(plain)
    for series in ([Series("a", xs, spiked)],
                   [Series("a", xs, ys), Series("b", xs, blown, outlier=True)]):
        lines = draw(series)
        assert axis_labels(lines) == axis_labels(plain), lines
        assert "outliers off the chart (y: fit them)" in lines[1]
        fitted = draw(series, all_y=True)
        assert max(axis_labels(fitted)) >= 900 and "outliers" not in "".join(fitted)
    # A curve of a diverged run alone is what there is to fit.
    alone = draw([Series("b", xs, blown, outlier=True)])
    assert max(axis_labels(alone)) >= 900 and "outliers" not in "".join(alone)


def test_smoothing_and_gaps_render() -> None:
    def scenario(chart: LossChart) -> None:
        xs, ys = decay(300)
        ys[100:120] = [math.nan] * 20
        ys[200] = math.inf
        chart.set_data([Series("run", xs, ys)], [], "step")
        chart.smoothing = 0.95

    _, lines = run_chart((60, 16), scenario)
    assert any(c in BRAILLE for line in lines for c in line)


def test_edge_cases_do_not_raise() -> None:
    cases: list[tuple[tuple[int, int], list[Series]]] = [
        ((80, 24), []),
        ((80, 24), [Series("empty", [], [])]),
        ((80, 24), [Series("one", [7.0], [2.5])]),
        ((80, 24), [Series("flat", [1.0, 2.0, 3.0], [2.0, 2.0, 2.0])]),
        ((80, 24), [Series("gaps", [1.0, 2.0], [None, math.nan])]),
        ((20, 5), [Series("tiny", *decay(100))]),
        ((5, 2), [Series("tinier", *decay(100))]),
    ]
    for size, series in cases:

        def scenario(chart: LossChart, series: list[Series] = series) -> int:
            chart.set_data(series, [(2.0, "f")], "t")
            return chart.size.width

        width, lines = run_chart(size, scenario)
        assert lines and all(len(line) == width for line in lines)
        if not series or not series[0].xs:
            assert "no metrics yet" in "\n".join(lines)
    _, lines = run_chart(
        (80, 24), lambda c: c.set_data([Series("flat", [1.0, 2.0, 3.0], [2.0] * 3)], [], "t")
    )
    rows = [r for r, line in enumerate(lines) if any(ch in BRAILLE for ch in line)]
    assert rows and abs(rows[0] - 12) <= 1  # a flat line sits in the middle


def test_log_scale_with_nothing_positive() -> None:
    def scenario(chart: LossChart) -> None:
        chart.set_data([Series("neg", [1.0, 2.0], [-1.0, 0.0])], [], "step")
        chart.log_y = True

    _, lines = run_chart((40, 10), scenario)
    assert "no positive values" in "\n".join(lines)


def test_a_million_points_render_with_bounded_width() -> None:
    n = 1_000_000
    xs = [float(x) for x in range(n)]
    ys: list[float | None] = [1.0 / (1.0 + x * 1e-4) + (x % 7) * 0.01 for x in range(n)]

    def scenario(chart: LossChart) -> None:
        chart.set_data([Series("big", xs, ys)], [(n / 2, "fork")], "step")
        chart.smoothing = 0.6

    _, lines = run_chart((80, 24), scenario)
    assert all(len(line) == 80 for line in lines)
    assert any(c in BRAILLE for line in lines for c in line)


def test_appended_points_extend_the_cached_smoothing() -> None:
    xs, ys = decay(100)

    def scenario(chart: LossChart) -> LossChart:
        chart.set_data([Series("live", xs, ys)], [], "step")
        chart.smoothing = 0.9
        return chart

    async def main() -> None:
        app = ChartApp()
        async with app.run_test(size=(60, 12)) as pilot:
            chart = scenario(app.query_one(LossChart))
            await pilot.pause()
            more_xs, more_ys = decay(150)
            xs.extend(more_xs[100:])
            ys.extend(more_ys[100:])
            chart.set_data([Series("live", xs, ys)], [], "step")
            await pilot.pause()
            smooth, raw = chart.curves(0)
            assert smooth == ema_debiased(ys, 0.9)
            assert raw == ys

    asyncio.run(main())


def test_a_live_chart_repaints_only_the_cells_new_points_change() -> None:
    xs, ys = decay(300)
    xs, ys = xs[:250], ys[:250]  # the rest arrives later, a point at a time

    async def main() -> None:
        app = ChartApp()
        async with app.run_test(size=(100, 24)) as pilot:
            chart = app.query_one(LossChart)
            chart.smoothing = 0.6
            chart.set_data([Series("live", xs, ys, emphasis=True)], [], "step", live=True)
            await pilot.pause()
            regions: list[tuple[Region, ...]] = []
            original = chart.refresh

            def recording(*args: Region, **kwargs: Any) -> LossChart:
                regions.append(args)
                return original(*args, **kwargs)

            chart.refresh = recording  # type: ignore[method-assign]
            chart.set_data([Series("live", xs, ys, emphasis=True)], [], "step", live=True)
            assert regions == []  # the same lists at the same lengths: nothing to draw
            more_xs, more_ys = decay(300)
            xs.append(more_xs[250])
            ys.append(more_ys[250])
            chart.set_data([Series("live", xs, ys, emphasis=True)], [], "step", live=True)
            assert len(regions) == 1 and regions[0], "expected a partial refresh"
            width, height = chart.content_size
            painted = sum(r.width for r in regions[0])
            assert painted < width * height / 10  # a few cells, not the chart
            assert all(r.height == 1 for r in regions[0])
            for step in range(251, 330):  # past 300 (a round end): the axis had room
                regions.clear()
                xs.append(more_xs[step] if step < 300 else float(step + 1))
                ys.append(more_ys[step] if step < 300 else more_ys[-1])
                chart.set_data([Series("live", xs, ys, emphasis=True)], [], "step", live=True)
                full = any(not call for call in regions)  # refresh() of the whole chart
                cells = sum(r.width for call in regions for r in call)
                assert not full and cells < width * height / 10, step

    asyncio.run(main())


def test_fresh_copies_of_unchanged_data_hit_the_smoothing_cache() -> None:
    xs, ys = decay(400)

    def scenario(chart: LossChart) -> tuple[int, int]:
        chart.smoothing = 0.9
        chart.set_data([Series("run", xs, ys)], [], "step")
        chart.curves(0)
        first = chart.values_smoothed
        for _ in range(3):  # each draw hands over new lists of the same points
            chart.set_data([Series("run", list(xs), list(ys))], [], "step")
            chart.curves(0)
        return first, chart.values_smoothed

    (first, after), _ = run_chart((80, 24), scenario)
    assert first == 2 * len(ys)  # cleaned, then smoothed, once
    assert after == first


def test_the_view_settings_live_in_one_chart_view_read_by_the_feed_and_the_chart() -> None:
    view = ChartView()
    assert (view.metric, view.smoothing, view.axis, view.log_y) == ("loss", 0.9, "step", False)
    weights = [view.smoothing]
    for _ in SMOOTHING_STEPS:
        view = view.next_smoothing()
        weights.append(view.smoothing)
    assert weights == [0.9, 0.95, 0.99, 0.0, 0.6, 0.8, 0.9]
    assert ChartView(smoothing=1.5).smoothing == 0.999  # a weight of 1 would never move
    assert view.next_metric({"loss", "acc", "lr"}).metric == "lr"
    assert view.next_metric(()).metric == "loss"
    # a run that logged no plain loss: the default stands for its training loss
    qualified = {"train/loss", "val/loss", "lr"}
    assert view.metric_for(qualified) == "train/loss"
    assert view.next_metric(qualified).metric == "val/loss"  # the next after the one drawn
    assert ChartView(metric="val/loss").metric_for(qualified) == "val/loss"
    assert view.metric_for({"val/loss"}) == "loss"  # no training loss: nothing to stand for

    timed = ChartView(metric="acc", smoothing=0.6, axis="time", log_y=True)
    assert ViewRequest.of(timed, 300, {"acc"}) == ViewRequest("acc", 300, "time", 0.6)
    assert ViewRequest.of(view, 300, qualified).key == "train/loss"

    async def main() -> None:
        app = ChartApp()
        async with app.run_test(size=(60, 12)):
            chart = app.query_one(LossChart)
            chart.view = timed
            assert (chart.smoothing, chart.log_y) == (0.6, True)
            chart.log_y = False  # a setter replaces the view, it does not keep a copy
            assert chart.view == ChartView(metric="acc", smoothing=0.6, axis="time")

    asyncio.run(main())


def _sweep(n: int, emphasised: int | None = None) -> list[Series]:
    """``n`` noisy decays, as a sweep overlaid; one of them emphasised if asked."""
    return [
        Series(f"r{i:02d}xyz lr={i}e-3 batch=32", *decay(300, 1.0 + i / 10),
               style=f"color({i + 1})", emphasis=i == emphasised)
        for i in range(n)
    ]


def test_a_twelve_run_overlay_names_every_run_on_legend_lines_above_the_plot() -> None:
    def scenario(chart: LossChart) -> None:
        chart.set_data(_sweep(12), [], "step")

    _, lines = run_chart((100, 30), scenario)
    legend = [line for line in lines if "━━" in line]
    assert 1 < len(legend) <= (30 - 2) // 3 and lines[: len(legend)] == legend
    assert all(f"r{i:02d}xyz lr={i}e-3 batch=32" in "".join(legend) for i in range(12))
    assert "more" not in "".join(legend)
    assert not any(c in BRAILLE for line in legend for c in line)  # the plot starts below
    assert any(c in BRAILLE for c in lines[len(legend)] + lines[len(legend) + 1])
    assert len(lines) == 30 and "step" in lines[-1]

    _, short = run_chart((100, 11), scenario)  # a third of 9 rows: 3 legend lines at most
    legend = [line for line in short if "━━" in line]
    assert len(legend) == 3 and legend[-1].rstrip().endswith("more")
    assert len(short) == 11 and any(c in BRAILLE for c in short[3])


def test_raw_points_are_drawn_faint_only_for_the_selected_run() -> None:
    def faint_cells(emphasised: int | None) -> int:
        async def main() -> int:
            app = ChartApp()
            async with app.run_test(size=(100, 30)) as pilot:
                chart = app.query_one(LossChart)
                chart.set_data(_sweep(4, emphasised), [], "step")
                chart.smoothing = 0.9  # a curve apart from the raw points
                await pilot.pause()
                return sum(
                    len(segment.text) for y in range(chart.size.height)
                    for segment in chart.render_line(y)
                    if segment.style is not None and segment.style.dim
                    and any(c in BRAILLE for c in segment.text)
                )

        return asyncio.run(main())

    # A sweep overlaid from its header (no run selected): curves only, no raw clouds.
    assert faint_cells(None) == 0
    assert faint_cells(2) > 0  # the selected run's raw points, faint behind the curves


def test_tick_labels_are_short_at_every_magnitude() -> None:
    """k/M/G up to the billions, then a bare exponent (a diverged loss of 1e28 read
    '1e+19G'); tiny values as 2e-8, not 2.00e-08."""
    def labels(hi: float) -> list[str]:
        ticks = nice_ticks(0, hi, 5)
        return [format_tick(v, ticks[1] - ticks[0]) for v in ticks]

    assert labels(1.084e28) == ["0", "2e27", "4e27", "6e27", "8e27", "1e28"]
    assert labels(12_345_678) == ["0", "2M", "4M", "6M", "8M", "10M", "12M"]
    assert labels(1.5e-7)[:3] == ["0", "2e-8", "4e-8"] and labels(1.5e-7)[-1] == "1.4e-7"
    assert labels(0.5) == ["0", "0.1", "0.2", "0.3", "0.4", "0.5"]
    assert all(len(label) <= 6 for hi in (1e12, 3.3e15, 7e99) for label in labels(hi))
