"""Every screen of the real TUI, compared with its accepted SVG snapshot.

The app is the one ``traintop`` opens, connected to a real daemon that serves a
store of fixed content (``fixed_state``). Each test waits until the app has
drawn everything the daemon sent (runs, values, chart, panels) before the
keys are pressed and the screenshot is taken. A changed screen fails here;
``pytest tests/snapshot_tests --snapshot-update`` accepts the new one, and the
SVG diff in review shows what changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, OptionList

from tests.conftest import Engine
from tests.snapshot_tests.fixed_state import BASE, FORK, SWEEP_IDS, TINY, WIDE
from tests.test_tui import until
from tui.app import TraintopApp
from tui.screens.detail import RunDetail
from tui.screens.dialogs import ForkDialog
from tui.screens.help import HelpScreen
from tui.screens.sweep_view import SweepView
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.loss_chart import LossChart
from tui.widgets.runs_table import RunsTable

SnapCompare = Callable[..., bool]
WIDE_TERMINAL = (120, 36)


def _all_drawn(app: TraintopApp) -> bool:
    """The daemon's runs, values, chart views and telemetry are all on screen."""
    table, chart = app.query_one(RunsTable), app.query_one(LossChart)
    state = app.state
    selected = table.selected_id
    return bool(
        state.connected
        and "⚠" not in str(app.query_one("#status").render())
        and len(table.order) == 4
        and state.telemetry
        and not (state.rows_dirty or state.changed or state.telemetry_dirty)
        and selected is not None
        and len(chart.series) == len(state.family(selected))
        and not app.feed.due(tuple(state.family(selected)), app._view_request())
    )


async def _settled(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, TraintopApp)
    await until(pilot, lambda: _all_drawn(app))


def _steady_cursors(screen: Screen[Any]) -> None:
    """Text cursors shown, not blinking: a blink would land in the shot by chance."""
    for field in screen.query(Input):
        field.cursor_blink = False


def _searching(app: Any) -> bool:
    """The palette is still gathering hits (they come in batches)."""
    group = CommandPalette._GATHER_COMMANDS_GROUP
    return any(worker.group == group and not worker.is_finished for worker in app.workers)


def test_main_view(snap_compare: SnapCompare, fixed_engine: Engine) -> None:
    """Runs (a fork under its parent), the family's chart, no GPU, the host panel."""
    app = TraintopApp(home=fixed_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=_settled)
    assert app.state.runs[BASE].state == "finished"


def test_main_view_with_two_fake_gpus(
    snap_compare: SnapCompare, fixed_engine_two_gpus: Engine
) -> None:
    """The GPU panel with two simulated H100s and their utilization history."""
    app = TraintopApp(home=fixed_engine_two_gpus.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=_settled)


def test_small_terminal(snap_compare: SnapCompare, fixed_engine_two_gpus: Engine) -> None:
    """80x24: the compact runs table, the chart and the panels squeezed."""
    app = TraintopApp(home=fixed_engine_two_gpus.paths.home)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settled)


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_view_sizes(
    snap_compare: SnapCompare, fixed_engine: Engine, size: tuple[int, int]
) -> None:
    """No GPU: the GPU panel gives its room to the host panel, which says why in a line;
    under 100 columns the chart takes the whole width and the panels sit under it."""

    async def settled_without_gpu_panel(pilot: Pilot[Any]) -> None:
        await _settled(pilot)
        assert not pilot.app.query_one(GpuPanel).display

    app = TraintopApp(home=fixed_engine.paths.home)
    assert snap_compare(app, terminal_size=size, run_before=settled_without_gpu_panel)


async def _open_fork(pilot: Pilot[Any]) -> None:
    await _settled(pilot)
    await pilot.press("f")
    dialog = await until(pilot, lambda: isinstance(pilot.app.screen, ForkDialog)
                         and pilot.app.screen)
    _steady_cursors(dialog)


def test_fork_dialog(snap_compare: SnapCompare, fixed_engine: Engine) -> None:
    """``f`` on the base run: its config, one field per key, ``lr`` focused."""
    app = TraintopApp(home=fixed_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=_open_fork)


def test_fork_dialog_in_80x24(snap_compare: SnapCompare, fixed_engine: Engine) -> None:
    """80x24: the fields scroll between the title and the buttons, which stay in sight."""
    app = TraintopApp(home=fixed_engine.paths.home)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_open_fork)


def test_run_detail(snap_compare: SnapCompare, fixed_engine: Engine) -> None:
    """``Enter`` on the failed run: config, last values, events, exit and stderr tail."""

    async def open_detail(pilot: Pilot[Any]) -> None:
        await _settled(pilot)
        await pilot.press("j", "j")
        app = pilot.app
        assert isinstance(app, TraintopApp)
        await until(pilot, lambda: app.query_one(RunsTable).selected_id == WIDE)
        await _settled(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetail))

    app = TraintopApp(home=fixed_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=open_detail)


def test_help_screen(snap_compare: SnapCompare, fixed_engine: Engine) -> None:
    """``?``: every key from the registry."""

    async def open_help(pilot: Pilot[Any]) -> None:
        await _settled(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))

    app = TraintopApp(home=fixed_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=open_help)


def test_command_palette(snap_compare: SnapCompare, fixed_engine: Engine) -> None:
    """``ctrl+p`` and a query: the actions of the key registry that match it."""

    async def search_palette(pilot: Pilot[Any]) -> None:
        await _settled(pilot)
        await pilot.press("ctrl+p")
        palette = await until(pilot, lambda: isinstance(pilot.app.screen, CommandPalette)
                              and pilot.app.screen)
        _steady_cursors(palette)
        await pilot.press(*"fork")
        results = palette.query_one(OptionList)
        await until(pilot, lambda: results.option_count > 0 and not _searching(pilot.app))

    app = TraintopApp(home=fixed_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=search_palette)


def test_four_runs_compared(snap_compare: SnapCompare, fixed_engine: Engine) -> None:
    """Every run marked (space): four curves in their own colours, named in the legend."""

    async def mark_all(pilot: Pilot[Any]) -> None:
        await _settled(pilot)
        await pilot.press("space", "j", "space", "j", "space", "j", "space")
        app = pilot.app
        assert isinstance(app, TraintopApp)
        chart = app.query_one(LossChart)
        shown = [BASE, FORK, WIDE, TINY]
        await until(pilot, lambda: list(app.state.marks) == shown
                    and sorted(s.run_id for s in chart.series) == sorted(shown)
                    and not app.feed.due(shown, app._view_request()))

    app = TraintopApp(home=fixed_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=mark_all)


def _sweep_drawn(app: TraintopApp, marked: bool) -> bool:
    """The sweep's header and runs are drawn, and the chart holds every run of it."""
    table, chart = app.query_one(RunsTable), app.query_one(LossChart)
    state = app.state
    return bool(
        state.connected
        and len(table.order) == len(SWEEP_IDS) + 1
        and all(state.runs[r].best for r in SWEEP_IDS)
        and not (state.rows_dirty or state.changed or state.telemetry_dirty)
        and (list(state.marks) == list(SWEEP_IDS)) == marked
        and sorted(s.run_id for s in chart.series) == sorted(SWEEP_IDS)
        # Marked: drawn in the marks' colours (the same runs were on the chart before).
        and all(s.style == state.marks.get(s.run_id) for s in chart.series)
        and not app.feed.due(SWEEP_IDS, app._view_request())
    )


async def _sweep_marked(pilot: Pilot[Any]) -> None:
    """The cursor on the sweep's header, space: all eight runs marked and overlaid."""
    app = pilot.app
    assert isinstance(app, TraintopApp)
    await until(pilot, lambda: _sweep_drawn(app, marked=False))
    assert app.query_one(RunsTable).selected_id == "sweep:charlm"
    await pilot.press("space")
    await until(pilot, lambda: _sweep_drawn(app, marked=True))


def test_eight_run_sweep_overlaid(snap_compare: SnapCompare, fixed_sweep_engine: Engine) -> None:
    """An 8-run sweep: its group in the table (counts, best), each run by its lr and
    batch, all marked and overlaid on the chart in their own colours."""
    app = TraintopApp(home=fixed_sweep_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=_sweep_marked)


def test_sweep_scatter(snap_compare: SnapCompare, fixed_sweep_engine: Engine) -> None:
    """``v`` on the sweep: best loss against lr (log x), the best run a star."""

    async def open_scatter(pilot: Pilot[Any]) -> None:
        await _sweep_marked(pilot)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(pilot.app.screen, SweepView)
                    and pilot.app.screen.shown is not None)

    app = TraintopApp(home=fixed_sweep_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=open_scatter)


def test_sweep_parallel_coordinates(snap_compare: SnapCompare, fixed_sweep_engine: Engine) -> None:
    """``p`` in the sweep view: an axis for lr (log) and batch, one for the best loss,
    each run a line shaded by it, the best run white."""

    async def open_parallel(pilot: Pilot[Any]) -> None:
        await _sweep_marked(pilot)
        await pilot.press("v", "p")
        await until(pilot, lambda: isinstance(pilot.app.screen, SweepView)
                    and pilot.app.screen.lines is not None)

    app = TraintopApp(home=fixed_sweep_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=open_parallel)
