"""Comparing runs in the real TUI: marks, the overlaid chart, stable colours, the legend.

The runs are stored ahead of the daemon's start, ended, the way a daemon would
have left them (as the snapshot tests do): many runs cost no workers.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from rich.color import Color
from rich.segment import Segment
from textual.widgets import Static

from engine.rundir.state_dir import DIR_MODE
from engine.server.store import Store
from tests.conftest import Engine
from tests.snapshot_tests.fixed_state import EPOCH, SYNTHETIC, loss_points, store_run
from tests.test_tui import _in_thread, until
from tui.app import TraintopApp
from tui.compare import MAX_MARKS
from tui.screens.diff import ConfigDiff
from tui.widgets.loss_chart import LossChart
from tui.widgets.runs_table import RunsTable
from tui.widgets.table_lines import MARK

Pilot = Any
STEPS = 60


def _stored_runs(
    engine: Engine, count: int, changes: dict[int, dict[str, Any]] | None = None
) -> list[str]:
    """``count`` ended runs (the second a fork of the first), and the daemon started.

    ``changes`` maps a run's index to the config values it has unlike the others.
    """
    paths = engine.paths
    paths.home.mkdir(mode=DIR_MODE, parents=True)
    paths.runs.mkdir(mode=DIR_MODE)
    ids = [f"c{n:05d}" for n in range(count)]
    store = Store(paths.store)
    try:
        for n, run_id in enumerate(ids):
            paths.run_dir(run_id).path.mkdir(mode=DIR_MODE)
            fork = {"parent_id": ids[0], "fork_step": STEPS // 2} if n == 1 else {}
            config = {**SYNTHETIC, **(changes or {}).get(n, {})}
            run = {"id": run_id, "name": f"cmp-{n}", "workload": "synthetic",
                   "config": config, "total_steps": STEPS, "created": EPOCH + n, **fork}
            start = STEPS // 2 if fork else 0
            points = loss_points(start, STEPS, 0.01 * (n + 1), EPOCH + n, seed=n)
            store_run(store, run, points, ("finished", "finished", 0))
    finally:
        store.close()
    assert engine.cli("engine", "start").code == 0
    return ids


def _config_keys(table: str) -> list[str]:
    """The keys of a diff table's config rows: those above its first blank row."""
    lines = table.splitlines()[1:]
    return [line.split()[0] for line in lines[: [ln.strip() for ln in lines].index("")]]


def _charted(app: TraintopApp) -> list[str]:
    """The runs on the chart, in drawing order, once every view asked for has come."""
    due = app.feed.due([o.run_id for o in app.shown], app._view_request())
    return [] if due else [s.run_id for s in app.query_one(LossChart).series]


def _mark_colour(table: RunsTable, run_id: str) -> Color | None:
    """The colour of the mark drawn on ``run_id``'s row (None: no mark)."""
    y = table.order.index(run_id) - round(table.scroll_offset.y) + 1
    first = next(iter(table.render_line(y)))
    return first.style.color if first.text == MARK and first.style else None


def _legend(chart: LossChart) -> tuple[str, dict[str, Color | None]]:
    """The legend's text (its lines, one after the other), and the colour of the swatch
    before each run id in it."""
    segments: list[Segment] = []
    for y in range(chart.size.height):  # the legend's lines are the top ones with swatches
        line = list(chart.render_line(y))
        if not any(s.text == "━━" for s in line):
            break
        segments += line
    colours = {}
    for swatch, label in itertools.pairwise(segments):
        if swatch.text == "━━" and swatch.style is not None:
            colours[label.text.split()[0]] = swatch.style.color
    return "".join(s.text for s in segments), colours


async def _mark(pilot: Pilot, table: RunsTable, *run_ids: str) -> None:
    for run_id in run_ids:
        table.select(run_id)
        await pilot.press("space")


def test_marked_runs_are_overlaid_and_keep_their_marks(engine: Engine) -> None:
    ids = _stored_runs(engine, 5)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(160, 40)) as pilot:
            table, chart = app.query_one(RunsTable), app.query_one(LossChart)
            await until(pilot, lambda: len(table.order) == 5)
            await until(pilot, lambda: _charted(app) == ids[:2])  # no marks: the family
            await _mark(pilot, table, ids[2], ids[3], ids[4])
            await until(pilot, lambda: sorted(_charted(app)) == ids[2:])

            text, swatches = _legend(chart)
            for run_id in ids[2:]:
                colour = Color.parse(app.state.marks[run_id])
                assert _mark_colour(table, run_id) == colour  # the table's mark,
                assert swatches[run_id] == colour  # the legend
                assert next(s for s in chart.series if s.run_id == run_id).style == (
                    app.state.marks[run_id])  # and the curve: one colour
            assert "cmp-3" in text and "+" not in text
            assert _mark_colour(table, ids[0]) is None

            # The table rebuilt (sorted, folded, filtered) and the engine restarted.
            await pilot.press("o", "C")
            await pilot.press("slash", *"cmp", "enter")
            await until(pilot, lambda: table.folded)
            old = engine.daemon_pid()
            assert (await _in_thread(lambda: engine.cli("engine", "stop"))).code == 0
            await until(pilot, lambda: not app.state.connected)
            assert (await _in_thread(lambda: engine.cli("engine", "start"))).code == 0
            await until(pilot, lambda: app.state.connected and engine.daemon_pid() != old)
            assert list(app.state.marks) == ids[2:]
            await until(pilot, lambda: sorted(_charted(app)) == ids[2:])

            await _mark(pilot, table, ids[3])  # unmarked: drawn only while under the cursor
            table.select(ids[4])
            await until(pilot, lambda: _charted(app) == [ids[2], ids[4]])
            assert _mark_colour(table, ids[3]) is None
            await pilot.press("u")  # every mark gone: the family again
            await until(pilot, lambda: _charted(app) == [ids[4]])
            assert not app.state.marks and _mark_colour(table, ids[2]) is None

    asyncio.run(scenario())


def test_a_runs_colour_is_the_same_in_another_session(engine: Engine) -> None:
    ids = _stored_runs(engine, 3)

    async def colours(*marked: str) -> dict[str, tuple[Color | None, str | None]]:
        """Each marked run's colour in the table and on the chart, in a new app."""
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(160, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == 3)
            await pilot.press("u")  # the last session's marks come back with it: none first
            await _mark(pilot, table, *marked)
            await until(pilot, lambda: sorted(_charted(app)) == sorted(marked))
            chart = app.query_one(LossChart)
            return {s.run_id: (_mark_colour(table, s.run_id), s.style) for s in chart.series}

    async def scenario() -> None:
        first = await colours(ids[0], ids[2])
        again = await colours(ids[2], ids[0])  # marked in the other order, in another app
        assert first == again and None not in (c for pair in first.values() for c in pair)

    asyncio.run(scenario())


def test_marking_more_than_the_cap_says_so_once_and_marks_nothing(engine: Engine) -> None:
    ids = _stored_runs(engine, MAX_MARKS + 2)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(160, 50), notifications=True) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == len(ids))
            await _mark(pilot, table, *ids[:MAX_MARKS])
            assert not app._notifications
            await _mark(pilot, table, ids[MAX_MARKS])
            messages = [n.message for n in app._notifications]
            assert len(messages) == 1 and f"at most {MAX_MARKS}" in messages[0]
            assert list(app.state.marks) == ids[:MAX_MARKS]
            assert _mark_colour(table, ids[MAX_MARKS]) is None
            # The marked runs, and the one under the cursor on top, all in one chart;
            # the legend names as many as a third of the chart's rows hold, the selected
            # first, and counts the others.
            await until(pilot, lambda: _charted(app) == [*ids[:MAX_MARKS], ids[MAX_MARKS]])
            text, swatches = _legend(app.query_one(LossChart))
            named = list(swatches)
            assert named[0] == ids[MAX_MARKS] and set(named) <= set(ids[: MAX_MARKS + 1])
            assert len(named) > 16 and f"+{MAX_MARKS + 1 - len(named)} more" in text

    asyncio.run(scenario())


def test_d_shows_the_config_diff_of_the_marked_runs_or_of_a_fork(engine: Engine) -> None:
    ids = _stored_runs(engine, 3, {1: {"lr": 0.005}, 2: {"batch": 64}})

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(160, 40), notifications=True) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == 3)

            table.select(ids[0])  # a root run, nothing marked: nothing to compare with
            await pilot.press("d")
            assert not isinstance(app.screen, ConfigDiff)
            assert any("mark two or more" in n.message for n in app._notifications)

            table.select(ids[1])  # a fork, nothing marked: it and its parent
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfigDiff))
            shown = str(app.screen.query_one("#diff", Static).render())
            assert _config_keys(shown) == ["lr"]
            assert ids[0] in shown and ids[1] in shown and "0.005" in shown
            # then where each stands: the best loss of each, as the table knows it
            (best,) = [line.split()[2:] for line in shown.splitlines()
                       if line.startswith("best loss")]
            assert best == [f"{app.state.runs[r].best['loss']:.6g}" for r in ids[:2]]
            await pilot.press("escape")

            await _mark(pilot, table, ids[0], ids[2])  # marked: exactly those runs
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfigDiff))
            shown = str(app.screen.query_one("#diff", Static).render())
            assert _config_keys(shown) == ["batch"]
            assert ids[1] not in shown

    asyncio.run(scenario())


def test_m_marks_every_run_the_filter_shows_and_refuses_more_than_the_cap(
    engine: Engine,
) -> None:
    lifted = range(10, 20)
    ids = _stored_runs(engine, MAX_MARKS + 6, {n: {"lr": 0.5} for n in lifted})

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(160, 50), notifications=True) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == len(ids))
            await pilot.press("M")  # 70 shown: more than can be compared, nothing marked
            messages = [n.message for n in app._notifications]
            assert len(messages) == 1 and f"{len(ids)} runs shown" in messages[0]
            assert not app.state.marks
            await pilot.press("slash", *"lr=0.5", "enter")
            await until(pilot, lambda: len(table.order) == len(lifted))
            await pilot.press("M")
            assert list(app.state.marks) == [ids[n] for n in lifted]
            await until(pilot, lambda: sorted(_charted(app)) == sorted(app.state.marks))
            await pilot.press("M")  # all marked already: unmarked
            assert not app.state.marks

    asyncio.run(scenario())
