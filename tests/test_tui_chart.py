"""The chart's zoom, pan, wheel and cursor in the real app under run_test(), against a
real daemon: on a stored run of a million points, on the fixed runs of the snapshot
tests (a base run and its fork at step 200), and on a live run."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from textual import events

from engine.rundir.paths import StatePaths
from engine.rundir.state_dir import DIR_MODE
from engine.server.store import Store
from tests.conftest import TERMINAL, Engine
from tests.snapshot_tests.fixed_state import BASE, EPOCH, FORK, fill_state_dir, store_run
from tests.test_tui import start, until
from tui.app import TraintopApp
from tui.chart_zoom import WHEEL_FACTOR
from tui.widgets.loss_chart import LossChart
from tui.widgets.runs_table import RunsTable

Pilot = Any
BIG = "b1g2r3"
BIG_N = 1_000_000


def _big_value(step: int) -> float:
    """A decaying loss with a wiggle of period 7: a decimated view would lose the wiggle."""
    return 2.0 / (1.0 + step * 1e-4) + 0.01 * (step % 7)


def _store_big_run(paths: StatePaths) -> None:
    paths.home.mkdir(mode=DIR_MODE, parents=True)
    paths.runs.mkdir(mode=DIR_MODE)
    paths.run_dir(BIG).path.mkdir(mode=DIR_MODE)
    store = Store(paths.store)
    try:
        points = [[s, "loss", _big_value(s), EPOCH + s * 0.01] for s in range(BIG_N)]
        store_run(store, {"id": BIG, "name": "big", "workload": "synthetic", "config": {},
                          "total_steps": BIG_N, "created": EPOCH}, points,
                  ("finished", "finished", 0))
    finally:
        store.close()


def _drawn(app: TraintopApp, runs: list[str]) -> bool:
    """The chart holds ``runs``, each from a view asked for the chart's window."""
    chart = app.query_one(LossChart)
    request = app._view_request()
    return (
        sorted(s.run_id for s in chart.series) == sorted(runs)
        and not app.feed.due(runs, request)
        and chart.window == request.window
    )


def test_last_n_on_a_million_points_shows_every_step_of_the_window(engine: Engine) -> None:
    _store_big_run(engine.paths)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            chart = app.query_one(LossChart)
            await until(pilot, lambda: _drawn(app, [BIG]))
            assert chart.window is None
            await pilot.press("z")
            await until(pilot, lambda: chart.window is not None and _drawn(app, [BIG]))
            assert chart.window == (BIG_N - 1000.0, float(BIG_N))
            assert chart.border_title == "last 1k steps"
            view = app.feed.views[BIG].data
            # At the chart's resolution: as many buckets across the window as for a whole run.
            assert view.range == chart.window
            assert view.width == 1000.0 / app._view_request().buckets
            # Each bucket holds the window's points themselves: its min and max are those
            # of the steps in it (the wiggle of period 7 survives), not the whole run's.
            lo, width = chart.window[0], view.width
            for b, vmin, vmax, _ema, count in view.buckets:
                steps = [s for s in range(math.ceil(lo + b * width), BIG_N)
                         if s < lo + (b + 1) * width]
                assert count == len(steps)
                assert (vmin, vmax) == (min(map(_big_value, steps)), max(map(_big_value, steps)))
            assert sum(b.points for b in view.buckets) == 1000
            xs = chart.series[0].xs
            assert xs[0] >= chart.window[0] and xs[-1] <= chart.window[1]

            spans = []
            for _ in range(3):  # 10k, 100k, then the whole run again
                await pilot.press("z")
                await until(pilot, lambda: _drawn(app, [BIG]))
                spans.append(None if chart.window is None else chart.window[1] - chart.window[0])
            assert spans == [10_000.0, 100_000.0, None]
            assert chart.border_title == ""

    asyncio.run(scenario())


async def _fixed_runs(pilot: Pilot) -> TraintopApp:
    """The app on the fixed runs, the base run selected and drawn unsmoothed."""
    app = pilot.app
    assert isinstance(app, TraintopApp)
    await until(pilot, lambda: app.query_one(RunsTable).selected_id == BASE)
    await pilot.press("s", "s", "s")  # 0.9 -> 0.95 -> 0.99 -> raw values
    assert app.state.view.smoothing == 0.0
    await until(pilot, lambda: _drawn(app, [BASE, FORK]))
    return app


def test_zoom_pan_and_cursor_keys_read_out_the_stored_points(engine: Engine) -> None:
    fill_state_dir(engine.paths, time.time(), 0)
    losses: dict[str, float] = {}

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            await _fixed_runs(pilot)
            chart = app.query_one(LossChart)
            await pilot.press("right")  # the cursor appears on the runs' last step
            await until(pilot, lambda: chart.cursor is not None)
            assert chart.frame is not None
            assert chart.frame.column_of(chart.cursor) == chart.frame.column_of(599.0)
            await pilot.press(*["left"] * 30)
            await until(pilot, lambda: chart.cursor is not None and chart.cursor < 400)
            cursor = chart.cursor
            await pilot.press("plus", "plus", "plus")  # 600 -> 300 -> 150 -> 75 steps
            await until(pilot, lambda: chart.window is not None and _drawn(app, [BASE, FORK]))
            lo, hi = chart.window
            span = hi - lo
            assert math.isclose(span, 599.0 / 8) and lo < cursor < hi  # the runs span 0..599
            assert app.feed.views[BASE].data.width is not None
            assert app.feed.views[BASE].data.width <= 1.0  # every stored point drawn

            # The readout: the cursor's step, each run's stored value there.
            step = math.floor(cursor)
            legend = chart.render_line(0).text
            assert legend.startswith(f" step {step} ")
            for run in (BASE, FORK):
                value = await asyncio.get_running_loop().run_in_executor(
                    None, lambda run=run: engine.losses(run)[step]
                )
                losses[run] = value
                assert f"{run} " in legend and f"{value:.4g}" in legend, (legend, value)

            await pilot.press("less_than_sign")
            await until(pilot, lambda: chart.window == (lo - span / 4, lo - span / 4 + span))
            await pilot.press("minus")
            await until(pilot, lambda: chart.window is not None
                        and math.isclose(chart.window[1] - chart.window[0], 2 * span))
            await pilot.press("Z")
            await until(pilot, lambda: chart.window is None and chart.cursor is None)
            assert not chart.render_line(0).text.startswith(" step")

    asyncio.run(scenario())
    assert set(losses) == {BASE, FORK}


def test_the_wheel_zooms_around_the_pointer_and_a_click_places_the_cursor(
    engine: Engine,
) -> None:
    fill_state_dir(engine.paths, time.time(), 0)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            await _fixed_runs(pilot)
            chart = app.query_one(LossChart)
            frame = chart.frame
            assert frame is not None
            left = chart.content_region.x - chart.region.x  # the border
            at = (left + frame.left + frame.width // 4, 10)  # a quarter into the plot
            x_before = frame.x_under(at[0] - left)
            await pilot._post_mouse_events([events.MouseScrollUp], chart, at)
            await until(pilot, lambda: chart.window is not None and _drawn(app, [BASE, FORK]))
            lo, hi = chart.window
            assert math.isclose(hi - lo, 599.0 / WHEEL_FACTOR)
            assert x_before is not None and chart.frame is not None
            # The step under the pointer is under it still.
            assert chart.frame.column_of(x_before) == frame.column_of(x_before)
            await pilot._post_mouse_events([events.MouseScrollDown], chart, at)
            await until(pilot, lambda: chart.window is None)

            assert await pilot.click(chart, offset=at)
            await until(pilot, lambda: chart.cursor is not None)
            assert chart.frame.column_of(chart.cursor) == chart.frame.column_of(x_before)
            assert chart.render_line(0).text.startswith(f" step {math.floor(chart.cursor)} ")

    asyncio.run(scenario())


def test_a_zoomed_tail_follows_a_live_run(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=100000", "sleep=0.005", "--name", "live")
    engine.wait_step(run_id, 200)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: _drawn(app, [run_id]))
            chart = app.query_one(LossChart)
            await pilot.press("plus")  # no cursor: around the end, following it
            await until(pilot, lambda: chart.window is not None and _drawn(app, [run_id]))
            assert app.zoom.following
            first = chart.window
            # Points keep coming: the window moves on with them, as wide as before.
            await until(pilot, lambda: chart.window is not None and chart.window[0] > first[0])
            lo, hi = chart.window
            assert math.isclose(hi - lo, first[1] - first[0])
            extent = app.chart_extent()
            assert extent is not None and lo < extent[1] <= hi

    asyncio.run(scenario())


def test_a_diverged_runs_curve_leaves_the_y_axis_to_the_runs_compared_with_it(
    engine: Engine,
) -> None:
    # The engine's watch judges the spike at step 100 diverged (the run may end before its
    # pause lands), and its curve no longer sets the y axis of the runs marked with it,
    # until 'y' fits them all.
    calm = start(engine, "synthetic", "steps=200", "--name", "calm")
    spiked = start(engine, "synthetic", "steps=200", "spike_at=100", "--name", "spiked")
    engine.wait(spiked, lambda r: (r["diverged"] is not None and r["state"] in TERMINAL)
                or r["state"] == "paused")
    engine.wait_state(calm, *TERMINAL)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            chart = app.query_one(LossChart)
            await until(pilot, lambda: len(table.order) == 2)
            table.select(calm)
            await pilot.press("space")
            table.select(spiked)
            await pilot.press("space")
            await until(pilot, lambda: _drawn(app, [calm, spiked]))
            assert {s.run_id: s.outlier for s in chart.series} == {calm: False, spiked: True}
            def said() -> bool:
                lines = [chart.render_line(y).text for y in range(chart.size.height)]
                return any("outliers off the chart (y: fit them)" in line for line in lines)

            await until(pilot, said)
            await pilot.press("y")
            await until(pilot, lambda: app.state.view.all_y and not said()
                        and "all y" in str(app.query_one("#status").render()))

    asyncio.run(scenario())
    assert '"all_y": true' in engine.paths.tui_view.read_text()  # kept for the next session
