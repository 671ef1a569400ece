"""The TUI opens where it was left: the view saved per state directory (tui.json),
kept across a restart of the TUI and a reconnect to the engine; pinned runs."""

from __future__ import annotations

import asyncio
import json
import stat
from typing import Any

from textual.widgets import Input

from tests.conftest import TERMINAL, Engine
from tests.test_tui import _in_thread, start, until
from tui.app import TraintopApp
from tui.widgets.loss_chart import LossChart
from tui.widgets.run_cells import PIN
from tui.widgets.runs_table import RunsTable


def _finished(engine: Engine, *names: str) -> list[str]:
    """Short runs (two metrics each), one per name, all ended."""
    ids = [start(engine, "synthetic", "steps=30", "extra_metrics=1", "--name", n) for n in names]
    for run_id in ids:
        engine.wait_state(run_id, *TERMINAL)
    return ids


def _status(app: TraintopApp) -> str:
    return str(app.query_one("#status").render())


def _saved(engine: Engine) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(engine.paths.tui_view.read_text())
    return data


def test_the_view_is_kept_when_the_tui_starts_again(engine: Engine) -> None:
    alpha, beta, gamma = _finished(engine, "alpha", "beta", "gamma")
    fork = engine.cli("fork", beta, "lr=0.01", "steps=40", "--json").json()["id"]
    engine.wait_state(fork, *TERMINAL)

    async def first_session() -> dict[str, Any]:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == 4)
            table.select(beta)
            await pilot.press("c")  # fold the fork under beta
            table.select(alpha)
            await pilot.press("space")  # mark alpha
            table.select(gamma)
            await pilot.press("t")  # pin gamma
            await pilot.press("m", "s", "g", "x", "o", "O")  # metric, smoothing, axes, sort
            await pilot.press("slash", *"synth", "enter")
            await until(pilot, lambda: table.text_filter == "synth" and table.has_focus)
            await until(pilot, lambda: app.query_one(LossChart).series)
            shown = app.saved_view()
        return shown.to_wire()

    shown = asyncio.run(first_session())
    assert shown["metric"] == "extra_0" and shown["log_y"] and shown["axis"] == "elapsed"
    assert _saved(engine) == shown  # written when the app closed, at the latest
    assert stat.S_IMODE(engine.paths.tui_view.stat().st_mode) == 0o600

    async def second_session() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == gamma)
            view = app.state.view
            assert (view.metric, view.smoothing) == (shown["metric"], shown["smoothing"])
            assert view.log_y and view.axis == "elapsed"
            assert (table.sort_column, table.descending) == ("ID", True)
            assert table.text_filter == "synth"
            field = app.query_one("#filter", Input)
            assert field.display and field.value == "synth"
            assert table.folded == {beta}  # (a filter shows the fork all the same)
            assert list(app.state.marks) == [alpha] and app.state.pinned == [gamma]
            assert table.order[0] == gamma  # pinned: on top, whatever the sort
            assert PIN in table.cell_text(gamma, "NAME")

    asyncio.run(second_session())


def test_a_corrupt_view_file_is_said_in_one_line_and_replaced_once_the_view_changes(
    engine: Engine,
) -> None:
    first, _second = _finished(engine, "first", "second")
    engine.paths.tui_view.write_text("{not json")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == first and app.state.listed)
            await pilot.pause(1.2)  # ticks that could save: nothing changed, nothing written
            assert "saved view ignored" in _status(app) and "not valid JSON" in _status(app)
            assert engine.paths.tui_view.read_text() == "{not json"
            await pilot.press("g")
            await until(pilot, lambda: "saved view" not in _status(app))
            assert _saved(engine)["log_y"] is True

    asyncio.run(scenario())


def test_a_saved_run_that_is_gone_leaves_the_default_selection(engine: Engine) -> None:
    first, second = _finished(engine, "first", "second")
    engine.paths.tui_view.write_text(json.dumps(
        {"version": 1, "selected": "gone00", "log_y": True, "smoothing": "high",
         "marks": [second, "gone00"], "pinned": ["gone00"]}))

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: app.state.listed and table.selected_id is not None)
            await pilot.pause(0.3)
            assert table.selected_id == first
            assert app.state.view.log_y  # the fields that are right still count
            assert list(app.state.marks) == [second] and app.state.pinned == []
            assert "ignored smoothing" in _status(app)

    asyncio.run(scenario())


def test_a_reconnect_to_the_engine_keeps_the_view(engine: Engine) -> None:
    first, second, third = _finished(engine, "one-x", "two", "three-x")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == 3)
            table.select(third)
            await pilot.press("t")
            table.select(first)
            await pilot.press("space", "m", "g", "o", "slash", *"-two", "enter")
            await until(pilot, lambda: table.order == [third, first])
            table.select(third)
            before = app.saved_view()
            old = engine.daemon_pid()
            assert (await _in_thread(lambda: engine.cli("engine", "stop"))).code == 0
            await until(pilot, lambda: not app.state.connected)
            assert (await _in_thread(lambda: engine.cli("engine", "start"))).code == 0
            await until(pilot, lambda: app.state.connected and engine.daemon_pid() != old)
            await until(pilot, lambda: "⚠" not in _status(app))
            await pilot.pause(0.5)  # the listing and its redraw
            assert app.saved_view() == before
            assert table.order == [third, first] and table.selected_id == third
            assert second in app.state.runs

    asyncio.run(scenario())


def test_a_pinned_run_stays_on_top_and_on_the_chart(engine: Engine) -> None:
    first, second, third = _finished(engine, "first", "second", "third")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            chart = app.query_one(LossChart)
            await until(pilot, lambda: table.order == [first, second, third])
            table.select(third)
            await pilot.press("t")
            await until(pilot, lambda: table.order == [third, first, second])
            assert table.cell_text(third, "NAME").startswith(PIN)
            await pilot.press("o", "o", "O")  # by NAME, descending: third is on top anyway
            await until(pilot, lambda: table.order == [third, second, first])
            table.select(first)
            await until(pilot, lambda: sorted(s.run_id for s in chart.series)
                        == sorted([first, third]))
            await pilot.press("space")  # marks overlaid: the pinned run stays on the chart
            table.select(second)
            await until(pilot, lambda: sorted(s.run_id for s in chart.series)
                        == sorted([first, second, third]))
            table.select(third)
            await pilot.press("t")  # unpinned: back in its place
            await until(pilot, lambda: table.order == [third, second, first]
                        and PIN not in table.cell_text(third, "NAME"))
            await pilot.press("O")
            await until(pilot, lambda: table.order == [first, second, third])

    asyncio.run(scenario())


def test_the_demo_opens_on_the_run_it_forks_whatever_was_saved(engine: Engine) -> None:
    names = ("demo-lr1e-3", "demo-lr3e-3", "demo-lr1e-2")
    ids = [start(engine, "synthetic", "steps=100000", "sleep=0.2", "--name", n) for n in names]
    engine.paths.tui_view.write_text(json.dumps({"selected": ids[2], "log_y": True}))

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, demo=True)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: app.state.listed and table.selected_id is not None)
            await pilot.pause(0.3)
            assert table.order[0] == ids[0] and table.selected_id == ids[1]
            assert app.state.view.log_y  # the rest of the saved view still counts

    asyncio.run(scenario())
