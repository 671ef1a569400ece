"""Sweeps in the real TUI on a real daemon: the sweep's group in the runs table, sorting
by the best loss, the sweep view's scatter, the sweep dialog, and queued runs.

Ended runs are stored ahead of the daemon's start (``fixed_state``); queued runs
wait in a paused queue, so none of them costs a worker.
"""

from __future__ import annotations

import asyncio
import math
import shlex
import time
from typing import Any
from unittest.mock import patch

from textual.app import App, ComposeResult
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static

from engine.client.events import MetricBatch, MetricPoint, RunInfo
from engine.client.importance import correlations
from engine.common.format import format_number
from engine.common.metric_goal import higher_is_better
from engine.common.sweep import run_names
from engine.server.store import Store
from tests.conftest import Engine
from tests.snapshot_tests.fixed_state import (
    EPOCH,
    SWEEP_IDS,
    fill_sweep_state_dir,
    loss_points,
    store_run,
)
from tests.test_sweep import store_coarse_sweep
from tests.test_tui import screen_of, until
from tui.app import TraintopApp
from tui.parallel_data import SHADES, parallel
from tui.scatter_data import scatter
from tui.screens.dialogs import ChoiceDialog, ConfirmDialog, MoreTrialsDialog
from tui.screens.diff import ConfigDiff
from tui.screens.sweep_dialog import SweepDialog
from tui.screens.sweep_view import SweepView
from tui.state import TuiState
from tui.sweep_groups import state_counts, sweep_groups
from tui.widgets.loss_chart import LossChart
from tui.widgets.parallel_plot import ParallelPlot
from tui.widgets.runs_table import RunsTable
from tui.widgets.sweep_scatter import SweepScatter

Pilot = Any
GROUP = "sweep:charlm"
LONE = ("l2o3n4", "l3o4n5")  # runs of no sweep, stored beside it


def _sweep_engine(engine: Engine) -> None:
    """The 8-run sweep of the snapshots, two runs of no sweep, and the daemon started.

    The lone runs' losses are chosen so that their last and best orders differ: the
    first ends high after a low dip (best 0.5, last 2.0).
    """
    fill_sweep_state_dir(engine.paths, time.time(), 0)
    store = Store(engine.paths.store)
    try:
        for n, (run_id, values) in enumerate(zip(LONE, ([3.0, 0.5, 2.0], [3.0, 1.7, 1.6]),
                                                 strict=True)):
            engine.paths.run_dir(run_id).path.mkdir(mode=0o700)
            points = [[s, "loss", v, EPOCH + 500 + s] for s, v in enumerate(values)]
            store_run(store, {"id": run_id, "name": f"lone-{n}", "workload": "synthetic",
                              "config": {"lr": 0.1}, "total_steps": 3,
                              "created": EPOCH + 500 + n}, points, ("finished", "finished", 0))
    finally:
        store.close()
    assert engine.cli("engine", "start").code == 0


def _app(engine: Engine) -> TraintopApp:
    return TraintopApp(home=engine.paths.home, autostart=False)


async def _loaded(pilot: Pilot, app: TraintopApp, rows: int) -> RunsTable:
    table = app.query_one(RunsTable)
    await until(pilot, lambda: len(table.order) == rows and all(
        r.best for r in app.state.runs.values() if r.id in SWEEP_IDS))
    return table


def test_a_sweeps_runs_show_as_one_foldable_group_named_by_what_differs(engine: Engine) -> None:
    _sweep_engine(engine)

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(160, 50)) as pilot:
            table = await _loaded(pilot, app, 11)
            assert table.order == [GROUP, *SWEEP_IDS, *LONE]
            header = {c: table.cell_text(GROUP, c) for c in ("ID", "NAME", "STATE", "BEST")}
            assert header["ID"] == "sweep" and header["NAME"] == "charlm · 8 runs"
            assert header["STATE"] == "7✔ 1■"  # seven finished, one killed
            best = min(app.state.runs[r].best["loss"] for r in SWEEP_IDS)
            assert header["BEST"] == format_number(best)
            # Each run by the values that differ (lr and batch), not its long name.
            assert table.cell_text(SWEEP_IDS[0], "NAME") == "└ lr=3e-4 batch=32"
            assert table.cell_text(SWEEP_IDS[7], "NAME") == "└ lr=0.01 batch=64"
            assert table.cell_text(LONE[0], "NAME") == "lone-0"

            table.select(SWEEP_IDS[3])
            await pilot.press("c")  # on a run of the sweep: its group folds
            await until(pilot, lambda: table.order == [GROUP, *LONE])
            assert table.selected_id == GROUP and table.cell_text(GROUP, "NAME").endswith("+8")
            await pilot.press("c")
            await until(pilot, lambda: len(table.order) == 11)

            await pilot.press("space")  # on the header: every run of the sweep marked
            assert list(app.state.marks) == list(SWEEP_IDS)
            await pilot.press("space")  # and unmarked again
            assert not app.state.marks

            await pilot.press("slash", *"lone", "enter")  # a filter hides the sweep
            await until(pilot, lambda: table.order == list(LONE))

    asyncio.run(scenario())


def test_the_table_sorts_by_the_best_loss_not_only_the_last(engine: Engine) -> None:
    _sweep_engine(engine)

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(160, 50)) as pilot:
            table = await _loaded(pilot, app, 11)
            await pilot.press("C")  # the sweep folded: the roots are what is sorted
            await until(pilot, lambda: len(table.order) == 3)
            runs = app.state.runs
            sweep_last = [runs[r].last["loss"] for r in SWEEP_IDS]
            sweep_best = [runs[r].best["loss"] for r in SWEEP_IDS]
            assert max(sweep_best) > 1.6 > min(sweep_last) > min(sweep_best) > 0.5
            table.sort_by("LOSS", False, app.state)
            assert table.order == [GROUP, LONE[1], LONE[0]]  # last: ~1.5, 1.6, 2.0
            table.sort_by("BEST", False, app.state)
            # best: 0.5, then the sweep (where its best run would be), then 1.6
            assert table.order == [LONE[0], GROUP, LONE[1]]
            assert table.cell_text(LONE[0], "BEST") == "0.5"
            assert table.cell_text(LONE[0], "LOSS") == "2"
            table.sort_by("BEST", True, app.state)  # descending: the sweep's highest best
            assert table.order == [GROUP, LONE[1], LONE[0]]

    asyncio.run(scenario())


def test_best_values_follow_the_points_that_stream_in() -> None:
    state = TuiState()
    run = RunInfo.from_wire({"id": "a2b3c4", "name": "a", "state": "running",
                             "workload": "synthetic", "step": 3, "best": {"loss": 1.0}})
    state.set_runs([run])
    batch = [MetricPoint(3, "loss", 1.5, 0.0), MetricPoint(4, "loss", 0.75, 0.0),
             MetricPoint(5, "loss", math.nan, 0.0), MetricPoint(6, "loss", -math.inf, 0.0),
             MetricPoint(6, "acc", 0.25, 0.0)]
    state.apply_event(MetricBatch("a2b3c4", tuple(batch)))
    assert state.runs["a2b3c4"].best == {"loss": 0.75, "acc": 0.25}
    state.apply_event(RunInfo.from_wire(  # an announcement lists no best: kept
        {"id": "a2b3c4", "name": "a", "state": "finished", "workload": "synthetic", "step": 7}))
    assert state.runs["a2b3c4"].best == {"loss": 0.75, "acc": 0.25}


def test_the_sweep_view_scatters_a_setting_against_the_best_or_last_loss(engine: Engine) -> None:
    _sweep_engine(engine)

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(160, 50)) as pilot:
            table = await _loaded(pilot, app, 11)
            table.select(SWEEP_IDS[2])
            await pilot.press("v")
            view = await until(pilot, lambda: isinstance(app.screen, SweepView) and app.screen)
            shown = view.shown
            assert shown is not None and shown.x_name == "lr" and shown.y_name == "best loss"
            assert shown.log_x  # 3e-4 to 1e-2: over 10x
            assert sorted(p.run_id for p in shown.points) == sorted(SWEEP_IDS)
            lowest = min(SWEEP_IDS, key=lambda r: app.state.runs[r].best["loss"])
            assert [p.run_id for p in shown.points if p.best] == [lowest]
            assert {p.label for p in shown.points} >= {"lr=3e-4 batch=32", "lr=0.01 batch=64"}
            text = str(view.query_one("#scatter-best", Static).render())
            assert lowest in text

            await pilot.press("x")  # the next setting that differs: batch, linear
            assert view.shown is not None and view.shown.x_name == "batch"
            assert not view.shown.log_x
            await pilot.press("b")  # the last loss: the killed run ended early, high
            last = view.shown
            assert last is not None and last.y_name == "last loss"
            by_last = min(SWEEP_IDS, key=lambda r: app.state.runs[r].last["loss"])
            assert [p.run_id for p in last.points if p.best] == [by_last]
            await pilot.press("escape")

            table.select(LONE[0])  # a run of no sweep, nothing marked: nothing to plot
            await pilot.press("v")
            assert not isinstance(app.screen, SweepView)
            for run_id in (LONE[0], SWEEP_IDS[0]):  # marked runs: those, in their colours
                table.select(run_id)
                await pilot.press("space")
            await pilot.press("v")
            view = await until(pilot, lambda: isinstance(app.screen, SweepView) and app.screen)
            assert view.shown is not None
            colours = {p.run_id: p.colour for p in view.shown.points}
            assert colours == {r: app.state.marks[r] for r in (LONE[0], SWEEP_IDS[0])}

    asyncio.run(scenario())


class _Holding(App[None]):
    """An app of one widget, to draw it on its own."""

    def __init__(self, held: Widget) -> None:
        super().__init__()
        self.held = held

    def compose(self) -> ComposeResult:
        yield self.held


def _names(engine: Engine, *argv: str) -> list[str]:
    """The names ``traintop sweep synthetic ARGV --dry-run`` would give."""
    result = engine.cli("sweep", "synthetic", *argv, "--dry-run", "--json")
    assert result.code == 0, result.err
    return [run["name"] for run in result.json()]


async def _sweep_dialog(pilot: Pilot, app: TraintopApp) -> SweepDialog:
    """The sweep dialog, opened with ``S`` once the app has its engine."""
    await until(pilot, lambda: app.state.connected)
    await pilot.press("S")
    return await screen_of(pilot, app, SweepDialog)


async def _fill(pilot: Pilot, dialog: SweepDialog, **fields: str) -> None:
    dialog.query_one("#builtin", Select).value = "synthetic"
    for field, value in fields.items():
        dialog.query_one(f"#{field}", Input).value = value
    await pilot.pause()


def test_the_sweep_dialog_starts_what_the_cli_would_and_refuses_bad_axes(engine: Engine) -> None:
    assert engine.cli("engine", "start").code == 0
    engine.call("queue_set", name="hold", paused=True)  # the runs wait: no workers
    grid = _names(engine, "lr=1e-4,3e-4", "batch=32,64")
    drawn = _names(engine, "lr=log(1e-4..1e-2)", "--trials", "3", "--seed", "7")

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(160, 50), notifications=True) as pilot:
            dialog = await _sweep_dialog(pilot, app)
            count = dialog.query_one("#sweep-count", Static)
            await _fill(pilot, dialog, axes="lr=log(1e-4..1e-2)", queue="hold")
            assert "a random axis needs --trials" in str(count.render())
            await pilot.press("ctrl+s")  # refused in the dialog, which stays; nothing starts
            error = dialog.query_one("#dialog-error", Static)
            await until(pilot, lambda: "trials" in str(error.render()))
            assert app.screen is dialog and engine.all_runs() == []
            await _fill(pilot, dialog, axes="lr=1e-4,3e-4 batch=32,64 steps=oops,2")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "nothing was started" in str(error.render()))
            assert engine.all_runs() == []

            await _fill(pilot, dialog, axes="lr=1e-4,3e-4 batch=32,64")
            assert "4 runs will start" in str(count.render())
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, SweepDialog))
            await until(pilot, lambda: len(app.state.runs) == 4)  # its names are taken now
            runs = engine.all_runs()
            assert [r["name"] for r in runs] == grid
            assert {r["sweep"] for r in runs} == {"synthetic"}
            assert {r["queue"] for r in runs} == {"hold"}
            assert {r["state"] for r in runs} == {"queued"}

            await pilot.press("S")  # random axes with trials and a seed, as the CLI's
            dialog = await screen_of(pilot, app, SweepDialog)
            await _fill(pilot, dialog, axes="lr=log(1e-4..1e-2)", trials="3", seed="7",
                        queue="hold")
            assert "3 runs will start" in str(dialog.query_one("#sweep-count", Static).render())
            await _fill(pilot, dialog, **{"early-stop": "0"})  # ASHA from step 0: refused
            await pilot.press("ctrl+s")
            error = dialog.query_one("#dialog-error", Static)
            await until(pilot, lambda: "first rung must be at step 1" in str(error.render()))
            await _fill(pilot, dialog, **{"early-stop": "20"})
            await pilot.press("ctrl+s")
            await until(pilot, lambda: len(engine.all_runs()) == 7)
            # The CLI's names were given before the first four took "synthetic": the group
            # and the names alike move on to the next free ones.
            later = [r for r in engine.all_runs() if r["name"] not in grid]
            assert {r["sweep"] for r in later} == {"synthetic-2"}
            assert [r["name"] for r in later] == drawn
            assert {r["early_stop"]["grace"] for r in later} == {20}
            assert all(r["early_stop"] is None for r in runs)

            await pilot.press("S")  # PBT: a round every 30 steps, the axes perturbed
            dialog = await screen_of(pilot, app, SweepDialog)
            await _fill(pilot, dialog, axes="lr=log(1e-4..1e-2) seed=0,1", trials="2",
                        queue="hold", pbt="30", **{"early-stop": "20"})
            await pilot.press("ctrl+s")
            error = dialog.query_one("#dialog-error", Static)
            await until(pilot, lambda: "early stopping or by PBT, not both" in str(
                error.render()))
            await _fill(pilot, dialog, **{"early-stop": ""})
            await pilot.press("ctrl+s")
            await until(pilot, lambda: len(engine.all_runs()) == 11)
            pbt = [r for r in engine.all_runs() if r["sweep"] == "synthetic-3"]
            assert len(pbt) == 4 and all(r["early_stop"] == {
                "interval": 30, "quantile": 0.25, "resample": 0.25, "metric": None,
                "mode": "min", "axes": {"lr": "log(0.0001..0.01)"}} for r in pbt)

            # The seed left empty: new draws, as the CLI makes them without --seed; made
            # again, new ones again, and the notice says which seed drew them.
            for sweep in ("synthetic-4", "synthetic-5"):
                await pilot.press("S")
                dialog = await screen_of(pilot, app, SweepDialog)
                await _fill(pilot, dialog, axes="lr=log(1e-4..1e-2)", trials="2", queue="hold")
                await pilot.press("ctrl+s")
                said.append(await until(pilot, lambda s=sweep: next((  # (kept: it fades)
                    n.message for n in app._notifications
                    if n.message.startswith(f"started 2 runs of sweep {s}")), None)))
            # A misspelt queue makes a new one, as on the command line: said, with the
            # closest known one.
            await pilot.press("S")
            dialog = await screen_of(pilot, app, SweepDialog)
            await _fill(pilot, dialog, axes="lr=1e-4,2e-4 steps=3", queue="hodl")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: any(n.message.startswith("queue 'hodl' is new: it runs ")
                                           and n.message.endswith("did you mean 'hold'?")
                                           for n in app._notifications))

    said: list[str] = []
    asyncio.run(scenario())
    had = [r["config"]["lr"] for r in engine.all_runs() if r["sweep"] not in (
        "synthetic-4", "synthetic-5")]
    for sweep in ("synthetic-4", "synthetic-5"):
        (notice,) = [m for m in said if m.startswith(f"started 2 runs of sweep {sweep}")]
        seed = notice.split("; seed ")[1].split(":")[0] if "; seed " in notice else "0"
        again = engine.cli("sweep", "synthetic", "lr=log(1e-4..1e-2)", "--trials", "2",
                           "--seed", seed, "--dry-run", "--json")
        made = sorted(r["config"]["lr"] for r in engine.all_runs() if r["sweep"] == sweep)
        assert made == sorted(float(run["overrides"][0][3:]) for run in again.json())
        assert not set(made) & set(had), (sweep, notice)  # none drawn before
        had += made
    assert "; seed " in notice and "were run before" in notice, notice  # the second


def test_the_sweep_dialog_starts_a_search_as_the_cli_would(engine: Engine) -> None:
    assert engine.cli("engine", "start").code == 0
    engine.call("queue_set", name="hold", paused=True)  # the runs wait: no workers
    axes = ["lr=log(1e-4..1e-2)", "dim=8,16"]
    names = _names(engine, *axes, "--search", "tpe", "--trials", "12", "--startup", "10")

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(160, 50), notifications=True) as pilot:
            dialog = await _sweep_dialog(pilot, app)
            count = dialog.query_one("#sweep-count", Static)
            await _fill(pilot, dialog, axes=" ".join(axes), queue="hold")
            dialog.query_one("#search", Select).value = "tpe"
            await until(pilot, lambda: "needs trials" in str(count.render()))
            await _fill(pilot, dialog, trials="12")
            assert "10 runs will start, 2 more as they end" in str(count.render())
            await pilot.press("ctrl+s")
            await until(pilot, lambda: len(engine.all_runs()) == 10)
            runs = engine.all_runs()
            assert [r["name"] for r in runs] == names
            rule = runs[0]["search"]
            assert rule["method"] == "tpe" and rule["trials"] == 12
            assert rule["axes"] == {"dim": ["8", "16"], "lr": "log(0.0001..0.01)"}
            assert all(r["search"] == rule and r["sweep"] == "synthetic" for r in runs)
            # The sweep's row says the trials made of all it will make.
            table = app.query_one(RunsTable)
            await until(pilot, lambda: "sweep:synthetic" in table.order)
            await until(pilot, lambda: table.cell_text("sweep:synthetic", "STEP") == "tpe 10/12")
            # N on its row: more trials for it, as 'traintop sweep --more'.
            table.select("sweep:synthetic")
            await pilot.press("N")
            more = await screen_of(pilot, app, MoreTrialsDialog)
            said = " ".join(str(w.render()) for w in more.query(Static))
            assert "It has made 10 of its 12 trials" in said, said
            more.query_one("#more", Input).value = "x"
            await pilot.press("ctrl+s")
            error = more.query_one("#dialog-error", Static)
            await until(pilot, lambda: "'x' is not a whole number" in str(error.render()))
            more.query_one("#more", Input).value = "5"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: table.cell_text("sweep:synthetic", "STEP") == "tpe 10/17")
            assert all(r["search"]["trials"] == 17 for r in engine.all_runs())
            assert len(engine.all_runs()) == 10  # its queue is held: none more now

    asyncio.run(scenario())


def _waiting(engine: Engine, queue: str) -> list[str]:
    return next(q for q in engine.call("queues") if q["name"] == queue)["waiting"]


def test_queued_runs_say_why_they_wait_and_move_up_and_down(engine: Engine) -> None:
    assert engine.cli("engine", "start").code == 0
    engine.call("queue_set", name="hold", paused=True)
    ids = [engine.cli("start", "synthetic", "--queue", "hold", "--name", f"q{n}",
                      "--json").json()["id"] for n in range(3)]

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(160, 50), notifications=True) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == 3 and app.state.telemetry and all(
                app.state.runs[r].condition for r in ids))
            await pilot.pause(0.3)
            drawn = [table.render_line(y).text for y in range(4)]
            # No GPU on the machine: no column of dashes for GPU memory; the room it
            # leaves, and all the room the table has, goes to why each run waits.
            gpus = bool(app.state.telemetry and app.state.telemetry[-1].gpus)
            assert ("GPU" in drawn[0].split()) == gpus, drawn[0]
            for place, run_id in enumerate(ids, 1):
                cell = table.cell_text(run_id, "STATE")
                assert cell.startswith(f"… queued #{place}: queue hold is paused"), cell
                assert cell in drawn[place], (cell, drawn[place])  # whole, not cut

            table.select(ids[2])
            await pilot.press("left_square_bracket")  # [: up one
            await until(pilot, lambda: [w["id"] for w in _waiting(engine, "hold")]
                        == [ids[0], ids[2], ids[1]])
            await until(pilot, lambda: table.cell_text(ids[2], "STATE").startswith(
                "… queued #2"))
            assert table.cell_text(ids[1], "STATE").startswith("… queued #3")
            table.select(ids[0])
            await pilot.press("right_square_bracket")  # ]: down one
            await until(pilot, lambda: [w["id"] for w in _waiting(engine, "hold")]
                        == [ids[2], ids[0], ids[1]])
            await until(pilot, lambda: table.cell_text(ids[2], "STATE").startswith(
                "… queued #1"))

    asyncio.run(scenario())


def test_a_one_decade_grid_is_scattered_on_a_log_x() -> None:
    def log_x(*lrs: float) -> bool:
        runs = [RunInfo.from_wire({"id": f"r{n}", "name": f"r{n}", "state": "finished",
                                   "workload": "charlm", "step": 9, "config": {"lr": lr},
                                   "best": {"loss": 1.0 + n}})
                for n, lr in enumerate(lrs)]
        return scatter(runs, "lr", "loss", True, {}, {}).log_x

    assert log_x(1e-3, 3e-3, 1e-2)  # 1e-3 and 3e-3 would crowd the left of a linear axis
    assert log_x(3e-5, 1e-4, 3e-4)  # a decade whose ratio comes out a hair under 10
    assert not log_x(1e-3, 2e-3, 9e-3)
    assert not log_x(0.0, 1e-3, 1e-2)  # a zero has no place on a log axis


def test_a_metric_spanning_a_decade_or_more_is_scattered_on_a_log_y() -> None:
    # A sweep whose diverging runs' best loss is 400 times its best run's: on a linear
    # y the good runs, the ones worth reading, lie flat on the axis.
    bests = [0.026, 0.03, 0.05, 0.09, 0.3, 4.0, 12.0]
    runs = [RunInfo.from_wire({"id": f"r{n}", "name": f"r{n}", "state": "finished",
                               "workload": "charlm", "step": 9, "config": {"lr": 1e-3 * (n + 1)},
                               "best": {"loss": best}})
            for n, best in enumerate(bests)]
    drawn = scatter(runs, "lr", "loss", True, {}, {})
    assert drawn.log_y
    assert not scatter(runs[:4], "lr", "loss", True, {}, {}).log_y  # 0.026 to 0.09

    async def scenario() -> list[str]:
        app = _Holding(SweepScatter())
        async with app.run_test(size=(60, 20)) as pilot:
            plot = app.query_one(SweepScatter)
            plot.set_data(drawn)
            await pilot.pause()
            return [plot.render_line(y).text for y in range(plot.size.height)]

    lines = asyncio.run(scenario())
    labels = [line[:7].strip() for line in lines[:-1] if line[:7].strip()]
    assert {"0.1", "1", "10"} <= set(labels), lines
    star = next(i for i, line in enumerate(lines) if "★" in line)
    tenth = next(i for i, line in enumerate(lines) if line[:7].strip() == "0.1")
    one = next(i for i, line in enumerate(lines) if line[:7].strip() == "1")
    assert star > tenth > one  # 0.026 sits below 0.1, a decade apart as 0.1 and 1 are


def test_the_sweep_views_key_never_breaks_a_run_across_lines(engine: Engine) -> None:
    _sweep_engine(engine)

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(90, 40)) as pilot:  # too narrow for the key on a line
            table = await _loaded(pilot, app, 11)
            table.select(GROUP)
            await pilot.press("v")
            view = await until(pilot, lambda: isinstance(app.screen, SweepView) and app.screen)
            await pilot.pause()
            shown = view.shown
            assert shown is not None and len(shown.points) == len(SWEEP_IDS)
            key = view.query_one("#scatter-runs", Static)
            lines = [key.render_line(y).text for y in range(key.size.height)]
            assert len(lines) > 1
            for point in shown.points:
                entry = f"{point.label} {format_number(point.y)}"
                assert sum(entry in line for line in lines) == 1, (entry, lines)

    asyncio.run(scenario())


def test_a_three_axis_sweep_is_named_whole_in_the_charts_legend(engine: Engine) -> None:
    """The last value of a sweep run's name is what tells it from its neighbour:
    the legend must not cut it off (``lr=1e-3 batch=16 dr…``)."""
    overrides = [["lr=1e-3", "batch=16", "dropout=0"], ["lr=0.01", "batch=32", "dropout=0.1"]]
    ids = [f"d{n}x4y5" for n in range(len(overrides))]
    engine.paths.home.mkdir(mode=0o700, parents=True)
    engine.paths.runs.mkdir(mode=0o700)
    store = Store(engine.paths.store)
    try:
        for n, (run_id, name) in enumerate(zip(ids, run_names("charlm", overrides,
                                                              lambda name: False), strict=True)):
            engine.paths.run_dir(run_id).path.mkdir(mode=0o700)
            config = dict(o.split("=") for o in overrides[n])
            store_run(store, {"id": run_id, "name": name, "workload": "charlm", "sweep": "charlm",
                              "config": config, "total_steps": 50, "created": EPOCH + n},
                      loss_points(0, 50, 1e-3 * (n + 1), EPOCH + n, seed=n),
                      ("finished", "finished", 0))
    finally:
        store.close()
    assert engine.cli("engine", "start").code == 0

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(140, 42)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == len(ids) + 1)
            table.select(GROUP)
            await pilot.press("space")
            chart = app.query_one(LossChart)
            await until(pilot, lambda: len(chart.series) == len(ids))
            await pilot.pause()
            legend = "".join(chart.render_line(y).text for y in range(4))
            for n in range(len(overrides)):
                assert " ".join(overrides[n]) in legend, legend

    asyncio.run(scenario())


def test_p_k_and_d_on_a_sweeps_row_act_on_all_its_runs(engine: Engine) -> None:
    started = engine.cli("sweep", "synthetic", "seed=1,2", "steps=100000", "sleep=0.01",
                         "--json")
    assert started.code == 0, started.err
    ids = [r["id"] for r in started.json()]
    for run_id in ids:
        engine.wait_step(run_id, 1)

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(160, 50)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.order == [GROUP.replace("charlm", "synthetic"),
                                                       *ids])
            table.select(table.order[0])  # the sweep's own row

            def states() -> set[str]:
                return {app.state.runs[r].state for r in ids}

            await pilot.press("p")  # both running: both paused
            await until(pilot, lambda: states() == {"paused"})
            await pilot.press("p")  # none running: the paused ones resumed
            await until(pilot, lambda: states() == {"running"})
            await pilot.press("K")
            dialog = await screen_of(pilot, app, ConfirmDialog)
            assert "Kill the 2 runs of sweep synthetic" in dialog.body and "2 running" in (
                dialog.body)
            await pilot.press("y")
            await until(pilot, lambda: states() == {"killed"})
            await pilot.press("K")  # nothing left to kill: said, no dialog
            await pilot.pause(0.2)
            assert not isinstance(app.screen, ConfirmDialog)
            await pilot.press("D")  # all ended now: removed, once confirmed
            choice = await screen_of(pilot, app, ChoiceDialog)
            assert "Remove the 2 ended runs of sweep synthetic (2 killed)?" in choice.body
            assert "c removes only their checkpoints (" in choice.body
            await pilot.press("y")
            await until(pilot, lambda: table.order == [])

    asyncio.run(scenario())


def test_d_on_a_sweeps_row_diffs_its_runs_a_row_each(engine: Engine) -> None:
    _sweep_engine(engine)

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(140, 40)) as pilot:
            table = await _loaded(pilot, app, 1 + len(SWEEP_IDS) + len(LONE))
            table.select(GROUP)
            await pilot.press("d")
            screen = await screen_of(pilot, app, ConfigDiff)
            text = str(screen.query_one("#diff", Static).render())
            header, *rows = text.splitlines()
            assert header.split()[:3] == ["RUN", "lr", "batch"], text
            assert [row.split()[0] for row in rows] == list(SWEEP_IDS)

    asyncio.run(scenario())


def test_a_sweeps_row_counts_its_rules_stops_apart_from_kills() -> None:
    def run(run_id: str, state: str, stopped_early: str | None = None) -> RunInfo:
        return RunInfo(id=run_id, name=run_id, state=state, workload="synthetic", step=9,
                       sweep="s", stopped_early=stopped_early)

    runs = {r.id: r for r in (run("a", "finished"), run("b", "killed"),
                              run("c", "killed", "stopped early at step 5: loss 3 ..."),
                              run("d", "killed", "diverged: loss nan at step 7"),
                              run("e", "running"))}
    [group] = sweep_groups(runs).values()
    assert state_counts(group, runs) == "1▶ 1✔ 2□ 1■"


def _run(n: int, config: dict[str, object], loss: float | None) -> RunInfo:
    return RunInfo.from_wire({"id": f"r{n}", "name": f"run{n}", "state": "finished",
                              "workload": "charlm", "step": 9, "config": config,
                              "best": {} if loss is None else {"loss": loss}})


def test_parallel_coordinates_put_each_setting_on_an_axis_and_each_run_on_a_line() -> None:
    runs = [_run(0, {"lr": 1e-4, "dim": 8, "opt": "sgd", "seed": 0, "steps": 9}, 3.0),
            _run(1, {"lr": 1e-3, "dim": 16, "opt": "adam", "seed": 1, "steps": 9}, 1.0),
            _run(2, {"lr": 1e-2, "dim": 32, "opt": "adam", "seed": 0, "steps": 9}, 2.0),
            _run(3, {"lr": 1e-3, "dim": 16, "opt": "adam", "seed": 0, "steps": 9}, 1.4),
            _run(4, {"lr": 1e-3, "opt": "sgd", "seed": 2, "steps": 9}, 5.0),  # no dim
            _run(5, {"lr": 1e-2, "dim": 8, "opt": "sgd", "seed": 0, "steps": 9}, None)]
    drawn = parallel(runs, "loss", True, {"r1": "lr=1e-3 dim=16"})
    # what differs, in first-seen order (steps never does), then the metric
    assert [a.name for a in drawn.axes] == ["lr", "dim", "opt", "seed", "best loss"]
    lr, dim, opt, _, loss = drawn.axes
    assert lr.log and not dim.log and opt.words == ("adam", "sgd") and not loss.log
    assert drawn.missing == 1  # r5: no loss, no line
    # worst first (drawn under the rest), the best last; shaded by rank
    assert [line.run_id for line in drawn.lines] == ["r4", "r0", "r2", "r3", "r1"]
    assert [line.shade for line in drawn.lines] == sorted(
        (line.shade for line in drawn.lines), reverse=True)
    assert drawn.lines[0].shade == len(SHADES) - 1 and drawn.lines[-1].shade == 0
    best = drawn.lines[-1]
    assert best.best and best.label == "lr=1e-3 dim=16" and best.value == 1.0
    assert [line.best for line in drawn.lines].count(True) == 1
    # 1e-3 is half way up a log axis from 1e-4 to 1e-2; dim 16 a third of 8..32
    assert best.positions[0] == 0.5 and best.positions[1] == 1 / 3
    assert best.positions[2] == 0.0 and best.positions[4] == 0.0  # adam; the lowest loss
    assert drawn.lines[0].positions[1] is None  # r4 has no dim: its line breaks there
    assert drawn.lines[0].positions[4] == 1.0

    grouped = parallel(runs, "loss", True, {}, group=True)  # seeds averaged, not an axis
    assert [a.name for a in grouped.axes] == ["lr", "dim", "opt", "best loss"]
    assert len(grouped.lines) == 4 and grouped.lines[-1].runs == 2
    assert grouped.lines[-1].value == 1.2 and grouped.lines[-1].label.endswith("(2 runs)")


def test_p_in_the_sweep_view_draws_the_sweep_as_parallel_coordinates(engine: Engine) -> None:
    _sweep_engine(engine)

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(120, 44)) as pilot:
            table = await _loaded(pilot, app, 11)
            table.select(GROUP)
            await pilot.press("v", "p")
            view = await screen_of(pilot, app, SweepView)
            drawn = view.lines
            plot = view.query_one(ParallelPlot)
            await until(pilot, lambda: plot.display and not view.query_one(SweepScatter).display)
            assert drawn is not None
            assert [a.name for a in drawn.axes] == ["lr", "batch", "best loss"]
            assert sorted(line.run_id for line in drawn.lines) == sorted(SWEEP_IDS)
            # each setting's importance (as 'ls --corr' gives it) beside its name
            runs = [app.state.runs[r] for r in SWEEP_IDS]
            weight = {c.key: c.importance for c in correlations(runs)}
            axes = str(view.query_one("#scatter-axes", Static).render())
            assert f"lr (log) {weight['lr']:.2f}  batch {weight['batch']:.2f} → best loss" in axes
            lowest = min(SWEEP_IDS, key=lambda r: app.state.runs[r].best["loss"])
            assert [line.run_id for line in drawn.lines if line.best] == [lowest]
            await pilot.pause()
            lines = [plot.render_line(y).text for y in range(plot.size.height)]
            assert lines[-1].split() == ["lr", "batch", "best", "loss"]
            assert lines[0].split()[:2] == ["0.01", "64"] and lines[-2].split()[:2] == [
                "0.0003", "32"]
            # the best run's star on the metric's axis, at its height: the lowest loss
            metric_col = plot.columns(plot.size.width)[-1]
            stars = [r for r, line in enumerate(lines) if line[metric_col] == "★"]
            assert stars == [plot.size.height - 3], lines
            assert any(0x2800 < ord(ch) <= 0x28FF for ch in "".join(lines[1:-2]))  # lines
            text = str(view.query_one("#scatter-best", Static).render())
            assert lowest in text and "best loss" in text

            ranked = sorted(SWEEP_IDS, key=lambda r: app.state.runs[r].best["loss"])
            assert view.picked is None
            await pilot.press("j")  # a run picked, from the best down: drawn apart
            assert view.picked == ranked[0]
            await pilot.press("j", "j", "j", "k")
            assert view.picked == ranked[2]
            await pilot.press("k", "k", "k")  # no further than the best
            assert view.picked == ranked[0]
            await pilot.press("j")
            await pilot.pause()
            picked = app.state.runs[ranked[1]]
            text = str(view.query_one("#scatter-best", Static).render())
            assert f"picked, 2 of {len(SWEEP_IDS)}" in text and ranked[1] in text
            assert f"batch={picked.config['batch']}" in text
            lines = [plot.render_line(y).text for y in range(plot.size.height)]
            assert sum(line.count("◆") for line in lines) == 3  # on each of the 3 axes
            assert any(f"◆ {picked.config['batch']}" in line for line in lines)

            await pilot.press("p")  # back to the scatter: the same run picked
            await until(pilot, lambda: not plot.display and view.query_one(SweepScatter).display)
            await pilot.pause()
            dots = view.query_one(SweepScatter)
            assert sum(dots.render_line(y).text.count("◆")
                       for y in range(dots.size.height)) == 1
            await pilot.press("enter")  # the view closes on it, selected in the table
            await until(pilot, lambda: not isinstance(app.screen, SweepView))
            assert table.selected_id == ranked[1]

    asyncio.run(scenario())


def test_a_pick_refreshes_only_the_lines_it_changes() -> None:
    # Over SSH a refresh of the whole plot is every cell of it; a pick is a few lines.
    runs = [_run(n, {"lr": 10 ** (-4 + n / 4), "batch": 2 ** (4 + n % 3)}, 1.0 + (n - 6) ** 2)
            for n in range(12)]
    drawn = parallel(runs, "loss", True, {})

    async def scenario() -> None:
        app = _Holding(ParallelPlot())
        async with app.run_test(size=(80, 24)) as pilot:
            plot = app.query_one(ParallelPlot)
            plot.set_data(drawn)
            await pilot.pause()
            before = [plot.render_line(y) for y in range(plot.size.height)]
            with patch.object(plot, "refresh", wraps=plot.refresh) as refresh:
                plot.set_data(drawn, "r3")
                await pilot.pause()
            regions = [region for call in refresh.call_args_list for region in call.args]
            after = [plot.render_line(y).text for y in range(plot.size.height)]
            assert after == [s.text for s in plot._layout(*plot.content_size)]  # as drawn anew
            assert after != [s.text for s in before] and "◆" in "".join(after)
            assert regions and refresh.call_count == len([c for c in refresh.call_args_list
                                                          if c.args])  # never all of it
            assert all(r.height == 1 for r in regions) and len(regions) < plot.size.height

    asyncio.run(scenario())


def test_n_in_the_sweep_view_opens_a_closer_sweep_around_the_best_run(engine: Engine) -> None:
    store_coarse_sweep(engine, "coarse")
    assert engine.cli("engine", "start").code == 0
    engine.call("queue_set", name="hold", paused=True)  # the new runs wait: no workers
    suggested = engine.cli("ls", "--corr").out.splitlines()[-1]  # the CLI's closer look
    lr_axis = next(w for w in shlex.split(suggested.rstrip(")")) if w.startswith("lr="))

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(160, 50), notifications=True) as pilot:
            table = await _loaded(pilot, app, 31)
            table.select("sweep:coarse")
            await pilot.press("v", "n")
            dialog = await screen_of(pilot, app, SweepDialog)
            await pilot.pause()
            assert dialog.query_one("#builtin", Select).value == "synthetic"
            axes = shlex.split(dialog.query_one("#axes", Input).value)
            assert lr_axis in axes and any(a.startswith("dim=int(") for a in axes)
            assert "steps=10" in axes  # the best run's config, the rest of it
            assert dialog.query_one("#trials", Input).value == "20"
            count = dialog.query_one("#sweep-count", Static)
            await until(pilot, lambda: "20 runs will start" in str(count.render()))
            dialog.query_one("#queue", Input).value = "hold"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: len(app.state.runs) == 50)

    asyncio.run(scenario())
    new = [r for r in engine.all_runs() if r["queue"] == "hold"]
    low, high = (float(end) for end in lr_axis[len("lr=log("):-1].split(".."))
    assert len(new) == 20 and {r["state"] for r in new} == {"queued"}
    assert all(low * (1 - 1e-9) <= r["config"]["lr"] <= high * (1 + 1e-9) for r in new)
    assert len({r["sweep"] for r in new}) == 1 and None not in {r["sweep"] for r in new}


def test_an_accuracy_is_ranked_highest_first_its_best_the_highest() -> None:
    runs = [RunInfo.from_wire({"id": f"r{n}", "name": f"r{n}", "state": "finished",
                               "workload": "charlm", "step": 9, "config": {"lr": lr},
                               "best": {"loss": loss, "val/acc": acc - 0.3},
                               "highest": {"loss": 9.0, "val/acc": acc},
                               "last": {"loss": loss, "val/acc": acc - 0.1}})
            for n, (lr, loss, acc) in enumerate([(1e-4, 2.0, 0.6), (1e-3, 1.0, 0.9),
                                                 (1e-2, 1.5, 0.7)])]
    assert higher_is_better("val/acc") and not higher_is_better("train/loss")
    dots = scatter(runs, "lr", "val/acc", True, {}, {})
    assert [p.y for p in dots.points] == [0.6, 0.9, 0.7]  # the highest each reached
    assert [p.run_id for p in dots.points if p.best] == ["r1"]
    lines = parallel(runs, "val/acc", True, {})
    assert [line.run_id for line in lines.lines] == ["r0", "r2", "r1"]  # worst first
    assert lines.lines[-1].best and lines.lines[-1].value == 0.9
    last = scatter(runs, "lr", "val/acc", False, {}, {})  # the last: as it was logged
    assert [p.y for p in last.points] == [0.5, 0.8, 0.6]
    assert [p.run_id for p in scatter(runs, "lr", "loss", True, {}, {}).points
            if p.best] == ["r1"]  # a loss: still the lowest


def test_the_sweep_view_plots_the_runs_of_the_sweep_the_filter_keeps(engine: Engine) -> None:
    store_coarse_sweep(engine, "coarse")
    assert engine.cli("engine", "start").code == 0
    wide = [r for r in engine.all_runs() if r["config"]["dim"] >= 40]

    async def scenario() -> None:
        app = _app(engine)
        async with app.run_test(size=(160, 50)) as pilot:
            table = await _loaded(pilot, app, 31)
            app.query_one("#filter", Input).value = "dim>=40"
            await until(pilot, lambda: len(table.order) == len(wide) + 1)
            table.select("sweep:coarse")
            await pilot.press("v", "p")
            view = await screen_of(pilot, app, SweepView)
            await until(pilot, lambda: view.lines is not None)
            assert view.lines is not None
            assert sorted(line.run_id for line in view.lines.lines) == sorted(
                r["id"] for r in wide)
            title = str(view.query_one("#dialog-title", Label).render())
            assert f"{len(wide)} of 30 runs, those the filter keeps (dim>=40)" in title

    asyncio.run(scenario())


def test_past_eight_settings_the_most_important_are_drawn() -> None:
    runs = [_run(n, {f"k{k}": float(n * (k + 1)) for k in range(10)}, float(n))
            for n in range(12)]
    plain = parallel(runs, "loss", True, {})
    assert [a.name for a in plain.axes][:-1] == [f"k{k}" for k in range(8)]
    assert plain.left_out == ("k8", "k9")
    weight: dict[str, float | None] = {f"k{k}": k / 10 for k in range(10)}
    weight["k0"] = 0.95  # the most important, first in order, kept
    drawn = parallel(runs, "loss", True, {}, weight=weight)
    assert [a.name for a in drawn.axes][:-1] == ["k0", *(f"k{k}" for k in range(3, 10))]
    assert drawn.left_out == ("k1", "k2")  # the least important, named as not drawn


def test_a_sweeps_rule_says_which_way_up_its_metric_is() -> None:
    # 'val_r' says nothing by its name; the sweep's ASHA rule maximises it
    rule = {"grace": 10, "eta": 3, "metric": "val_r", "mode": "max"}
    runs = [RunInfo.from_wire({"id": f"r{n}", "name": f"r{n}", "state": "finished",
                               "workload": "charlm", "step": 9, "config": {"lr": lr},
                               "early_stop": rule, "best": {"loss": 1.0, "val_r": r - 1},
                               "highest": {"loss": 2.0, "val_r": r}, "last": {"val_r": r}})
            for n, (lr, r) in enumerate([(1e-4, 0.2), (1e-3, 0.8), (1e-2, 0.5)])]
    assert not higher_is_better("val_r")

    async def scenario() -> None:
        class One(App[None]):
            def on_mount(self) -> None:
                self.push_screen(SweepView("sweep", lambda: runs, {}, {}))

        app = One()
        async with app.run_test(size=(120, 40)) as pilot:
            view = await screen_of(pilot, app, SweepView)
            await pilot.press("m")  # from the loss to val_r
            shown = view.shown
            assert shown is not None and shown.y_name == "best val_r"
            assert [p.run_id for p in shown.points if p.best] == ["r1"]  # the highest
            assert [p.y for p in shown.points] == [0.2, 0.8, 0.5]
            axes = str(view.query_one("#scatter-axes", Static).render())
            assert "(higher is better)" in axes

    asyncio.run(scenario())
