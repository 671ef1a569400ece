"""The chart zoomed with its cursor, and forks close together, in the real TUI against a
real daemon on a fixed store (see ``test_screens``), compared with accepted snapshots."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.conftest import Engine
from tests.snapshot_tests.conftest import _fixed_engine
from tests.snapshot_tests.fixed_state import BASE, CLOSE_FORKS, fill_close_forks_state_dir
from tests.snapshot_tests.test_screens import WIDE_TERMINAL, _settled
from tests.test_tui import until
from tui.app import TraintopApp
from tui.widgets.loss_chart import LossChart
from tui.widgets.runs_table import RunsTable

SnapCompare = Callable[..., bool]


@pytest.fixture
def close_forks_engine(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Engine]:
    """The base run and two forks of it at steps 100 and 104."""
    yield from _fixed_engine(monkeypatch, capsys, fake_gpus=0, fill=fill_close_forks_state_dir)


def _chart_settled(app: TraintopApp, runs: list[str]) -> bool:
    """The chart holds ``runs`` from views of its current window, and nothing is pending."""
    chart, state = app.query_one(LossChart), app.state
    request = app._view_request()
    return bool(
        state.connected and state.telemetry
        and not (state.rows_dirty or state.changed or state.telemetry_dirty)
        and sorted(s.run_id for s in chart.series) == sorted(runs)
        and not app.feed.due(runs, request) and chart.window == request.window
    )


def test_zoomed_chart_with_cursor(snap_compare: SnapCompare, fixed_engine: Engine) -> None:
    """The base run and its fork, zoomed four times around the cursor near the fork:
    the window's points in full, the cursor's column, its step on the x axis and each
    run's value there in the legend."""

    async def zoom(pilot: Pilot[Any]) -> None:
        await _settled(pilot)
        app = pilot.app
        assert isinstance(app, TraintopApp)
        await pilot.press("right", *["left"] * 45, "plus", "plus", "plus", "plus")
        family = app.state.family(BASE)
        await until(pilot, lambda: app.zoom.span is not None and app.zoom.span < 40
                    and _chart_settled(app, family))

    app = TraintopApp(home=fixed_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=zoom)


def test_two_close_forks(snap_compare: SnapCompare, close_forks_engine: Engine) -> None:
    """Forks at steps 100 and 104: their labels stacked, each whole."""
    runs = [BASE, *(fork for fork, _, _ in CLOSE_FORKS)]

    async def settled(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, TraintopApp)
        await until(pilot, lambda: app.query_one(RunsTable).selected_id == BASE
                    and len(app.query_one(RunsTable).order) == 3 and _chart_settled(app, runs))

    app = TraintopApp(home=close_forks_engine.paths.home)
    assert snap_compare(app, terminal_size=WIDE_TERMINAL, run_before=settled)
