"""The real Textual app under run_test(), driving a real daemon and real runs."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from textual.widgets import Input, Static

from engine.common.format import format_number
from engine.common.smoothing import ema_debiased
from engine.server.store import Store
from tests.conftest import TERMINAL, Engine
from tui.app import TraintopApp
from tui.screens.detail import RunDetail
from tui.screens.dialogs import (
    AnnotateDialog,
    ChoiceDialog,
    ConfirmDialog,
    ForkDialog,
    NewRunDialog,
)
from tui.screens.help import HelpScreen
from tui.widgets.loss_chart import LossChart
from tui.widgets.runs_table import RunsTable

Pilot = Any
S = TypeVar("S")


async def until(pilot: Pilot, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Let the app run until ``check()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.1)


async def screen_of(pilot: Pilot, app: Any, kind: type[S]) -> S:
    """Let the app run until it shows a screen of ``kind`` (a dialog a key opened); that
    screen."""
    screen = await until(pilot, lambda: isinstance(app.screen, kind) and app.screen)
    assert isinstance(screen, kind)
    return screen


def start(engine: Engine, *args: str) -> str:
    result = engine.cli("start", *args, "--json")
    assert result.code == 0, result.err
    run_id: str = result.json()["id"]
    return run_id


async def _in_thread(func: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, func)


def test_forks_sit_under_their_parent_and_share_its_chart(engine: Engine) -> None:
    parent = start(engine, "synthetic", "steps=3000", "sleep=0.01", "--name", "base")
    engine.wait_step(parent, 20)
    child = engine.cli("fork", parent, "lr=0.01", "--json").json()["id"]
    other = start(engine, "synthetic", "steps=50", "--name", "other")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == 3)
            assert table.order == [parent, child, other]
            assert table.cell_text(child, "NAME").startswith("└ ")
            table.select(child)
            chart = app.query_one(LossChart)
            await until(pilot, lambda: len(chart.series) == 2)
            labels = [s.label for s in chart.series]
            assert labels[0].startswith(parent) and labels[1].startswith(child)
            assert chart.markers and chart.markers[0][0] == engine.run(child)["fork_step"]

    asyncio.run(scenario())


def test_a_cursor_move_landing_during_shutdown_is_ignored(engine: Engine) -> None:
    # A CursorMoved posted just before quitting can be handled after the table is gone.
    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(100, 30)) as pilot:
            await app.query_one(RunsTable).remove()
            app._moved_at = 0.0
            app._selection_moved()  # a single move: follows at once
            app._selection_moved()  # a burst: follows on a timer
            await pilot.pause(0.2)
            assert app.is_running and app.return_code is None

    asyncio.run(scenario())


def test_keys_pause_resume_fork_and_kill_with_confirmation(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=5000", "sleep=0.01", "--name", "keys")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == run_id)
            await pilot.press("p")
            await until(pilot, lambda: app.state.runs[run_id].state == "paused")
            await pilot.press("p")
            await until(pilot, lambda: app.state.runs[run_id].state == "running")

            await pilot.press("f")
            dialog = await until(pilot, lambda: isinstance(app.screen, ForkDialog) and app.screen)
            field = dialog.query_one("#cfg-lr", Input)
            field.value = "0.002"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, ForkDialog))
            forks = await until(
                pilot, lambda: [r for r in app.state.runs.values() if r.parent_id == run_id]
            )
            assert forks[0].config["lr"] == 0.002
            await until(pilot, lambda: table.selected_id == forks[0].id)  # the new fork

            table.select(run_id)
            await pilot.press("K")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("n")  # declined: nothing happens
            await pilot.pause(0.3)
            assert app.state.runs[run_id].state == "running"
            await pilot.press("K")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            await until(pilot, lambda: app.state.runs[run_id].state == "killed")

            await pilot.press("enter")
            detail = await until(pilot, lambda: isinstance(app.screen, RunDetail) and app.screen)
            text = str(detail.query_one("#detail").render())
            assert "killed by user" in text and "lr = 0.02" in text
            await pilot.press("escape")
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen))

    asyncio.run(scenario())
    forks = [r for r in engine.all_runs() if r["parent_id"] == run_id]
    assert len(forks) == 1 and forks[0]["config"]["lr"] == 0.002


def test_d_removes_an_ended_run_or_its_checkpoints_and_refuses_a_live_one(engine: Engine) -> None:
    done = start(engine, "synthetic", "steps=20", "--name", "done")
    live = start(engine, "synthetic", "steps=100000", "sleep=0.01", "--name", "live")
    engine.wait_state(done, "finished")
    engine.wait_step(live, 1)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: set(table.order) == {done, live})
            table.select(live)
            await pilot.press("D")  # running: said at once, and no dialog
            await until(pilot, lambda: any("kill it first" in n.message
                                           for n in app._notifications))
            assert not isinstance(app.screen, ChoiceDialog)

            table.select(done)
            await pilot.press("space")  # on the chart: the mark goes with the run
            assert done in app.state.marks
            await pilot.press("D")
            dialog = await screen_of(pilot, app, ChoiceDialog)
            assert f"Remove run {done} (done), finished at step 20?" in dialog.body
            assert "KiB of files" in dialog.body and "for good" in dialog.body
            assert "c removes only its checkpoints (" in dialog.body
            await pilot.press("n")  # declined: nothing happens
            await pilot.pause(0.3)
            assert done in app.state.runs and engine.paths.run_dir(done).path.is_dir()
            assert checkpoints.is_file()

            await pilot.press("D")  # only its checkpoints: the run and its points stay
            await until(pilot, lambda: isinstance(app.screen, ChoiceDialog))
            await pilot.press("c")
            await until(pilot, lambda: not checkpoints.exists())
            await pilot.pause(0.3)
            assert done in app.state.runs and table.order == [done, live]
            assert app.state.runs[done].checkpoints_removed is not None
            await pilot.press("f")  # nothing to fork from: said at once, no dialog
            await until(pilot, lambda: any("its checkpoints were removed" in n.message
                                           for n in app._notifications))
            assert not isinstance(app.screen, ForkDialog)

            await pilot.press("delete")  # the Delete key does the same
            await until(pilot, lambda: isinstance(app.screen, ChoiceDialog))
            await pilot.press("y")
            await until(pilot, lambda: table.order == [live])
            assert done not in app.state.runs and done not in app.state.marks

    checkpoints = engine.paths.run_dir(done).checkpoints / "final.pt"
    asyncio.run(scenario())
    assert [r["id"] for r in engine.all_runs()] == [live]
    assert not engine.paths.run_dir(done).path.exists()


def test_the_remove_dialog_says_a_training_fork_keeps_what_it_started_from(
    engine: Engine,
) -> None:
    done = start(engine, "synthetic", "steps=20", "--name", "done")
    engine.wait_state(done, "finished")
    fork = engine.cli("fork", done, "steps=100000", "sleep=0.01", "--json").json()["id"]

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: set(table.order) == {done, fork})
            table.select(done)
            await pilot.press("D")
            dialog = await screen_of(pilot, app, ChoiceDialog)
            assert "1 that a fork still needs stays" in dialog.body
            await pilot.press("c")  # nothing else to remove: said so, and the run unmarked
            await until(pilot, lambda: any(
                n.message == f"removed the checkpoints of {done}: 0 B freed; 1 that a fork "
                "still needs stays" for n in app._notifications))
            assert app.state.runs[done].checkpoints_removed is None

    asyncio.run(scenario())
    assert (engine.paths.run_dir(done).checkpoints / "final.pt").is_file()
    assert engine.cli("kill", fork).code == 0


def test_e_edits_a_runs_tags_and_note(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=5", "--name", "tagme")
    other = start(engine, "synthetic", "steps=5", "--name", "other")
    engine.wait_state(run_id, "finished")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(160, 40)) as pilot:  # room for the tags
            table = app.query_one(RunsTable)
            await until(pilot, lambda: set(table.order) == {run_id, other})
            table.select(run_id)
            await pilot.press("e")
            dialog = await screen_of(pilot, app, AnnotateDialog)
            dialog.query_one("#tags", Input).value = "baseline keep"
            dialog.query_one("#note", Input).value = "first try"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: app.state.runs[run_id].tags == ("baseline", "keep"))
            assert not isinstance(app.screen, AnnotateDialog)
            await until(pilot, lambda: table.cell_text(run_id, "NAME") == "tagme #baseline #keep")
            app.query_one("#filter", Input).value = "keep"  # '/' finds a tag
            await until(pilot, lambda: table.order == [run_id])
            app.query_one("#filter", Input).value = ""
            await until(pilot, lambda: len(table.order) == 2)

            table.focus()
            table.select(run_id)
            await pilot.press("e")  # a tag taken off; the note, untouched, stays
            dialog = await screen_of(pilot, app, AnnotateDialog)
            assert dialog.query_one("#note", Input).value == "first try"
            dialog.query_one("#tags", Input).value = "baseline"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: app.state.runs[run_id].tags == ("baseline",))

    asyncio.run(scenario())
    run = engine.run(run_id)
    assert run["tags"] == ["baseline"] and run["note"] == "first try"


def test_readonly_mode_refuses_every_change(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=3000", "sleep=0.01")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, readonly=True)
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == run_id)
            for key in ("p", "K", "f", "n"):
                await pilot.press(key)
            await pilot.pause(0.5)
            assert not isinstance(app.screen, ConfirmDialog | ForkDialog)
            said = [n.message for n in app._notifications]  # each said, not ignored
            for key in ("p", "K", "f", "n"):
                assert (f"read-only: {key} would change runs (traintop started with "
                        "--readonly)") in said, said

    asyncio.run(scenario())
    assert engine.run(run_id)["state"] == "running"
    assert len(engine.all_runs()) == 1


def test_losing_the_engine_shows_a_banner_and_reconnects(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=40")
    engine.wait_state(run_id, *TERMINAL)

    async def scenario() -> None:
        # No autostart, so the engine stays away until the test brings it back
        # (with autostart the TUI would start a new one within a blink).
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.state.connected and app.state.runs)
            old = engine.daemon_pid()
            assert (await _in_thread(lambda: engine.cli("engine", "stop"))).code == 0
            status = app.query_one("#status")
            await until(pilot, lambda: "⚠" in str(status.render()))
            assert not app.state.connected
            await pilot.press("p")  # an action while disconnected says why, and blocks nothing
            assert (await _in_thread(lambda: engine.cli("engine", "start"))).code == 0
            await until(pilot, lambda: app.state.connected and engine.daemon_pid() != old)
            await until(pilot, lambda: "⚠" not in str(status.render()))
            assert run_id in app.state.runs

    asyncio.run(scenario())


def test_new_run_dialog_filter_logs_and_chart_options(engine: Engine) -> None:
    first = start(engine, "synthetic", "steps=30", "print_every=5", "--name", "printer")
    engine.wait_state(first, *TERMINAL)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == first)

            await pilot.press("l")  # the selected run's output, tail first
            logs = app.query_one("#logs")
            await until(pilot, lambda: any("step 25" in str(line) for line in logs.lines))

            await pilot.press("n")
            dialog = await until(pilot, lambda: isinstance(app.screen, NewRunDialog) and app.screen)
            dialog.query_one("#cfg-steps", Input).value = "77"
            dialog.query_one("#cfg-lr", Input).value = "not-a-number"
            await pilot.press("ctrl+s")
            error = dialog.query_one("#dialog-error")
            await until(pilot, lambda: "expected a number" in str(error.render()))
            assert isinstance(app.screen, NewRunDialog)  # stays open to be corrected
            dialog.query_one("#cfg-lr", Input).value = "0.01"
            dialog.query_one("#name", Input).value = "from-dialog"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, NewRunDialog))
            made = await until(
                pilot, lambda: [r for r in app.state.runs.values() if r.name == "from-dialog"]
            )
            assert made[0].config["steps"] == 77 and made[0].config["lr"] == 0.01
            await until(pilot, lambda: table.selected_id == made[0].id)

            await pilot.press("slash")
            await pilot.press(*"printer")
            await until(pilot, lambda: table.order == [first])
            await pilot.press("enter")
            await until(pilot, lambda: table.has_focus)

            chart = app.query_one(LossChart)
            await until(pilot, lambda: chart.series)
            await pilot.press("g")
            assert chart.log_y
            before = chart.smoothing
            await pilot.press("s")
            assert chart.smoothing != before
            await pilot.press("x")  # seconds since the run's first point
            await until(pilot, lambda: chart.x_label == "elapsed" and chart.series
                        and 0 <= chart.series[0].xs[0] < 60)
            await pilot.press("x")  # the wall clock
            await until(pilot, lambda: chart.x_label == "time" and chart.series
                        and chart.series[0].xs[0] > 1e9)

    asyncio.run(scenario())


def test_fork_of_a_wrapped_command_says_why_at_once(engine: Engine) -> None:
    import sys

    script = (
        "import time\n"
        "for i in range(100000):\n"
        "    print(f'step {i} loss {1/(i+1)}')\n"
        "    time.sleep(0.02)\n"
    )
    started = engine.cli("run", "--", sys.executable, "-c", script)
    assert started.code == 0, started.err
    run_id = engine.all_runs()[0]["id"]

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == run_id)
            await pilot.press("f")
            await pilot.pause(0.3)
            assert not isinstance(app.screen, ForkDialog)
            messages = [n.message for n in app._notifications]
            assert any("cannot be forked" in m for m in messages)
            await pilot.press("P")  # release: refused from the run row, no round trip
            await pilot.pause(0.3)
            messages = [n.message for n in app._notifications]
            assert any("cannot be paused with its memory released" in m for m in messages)
        assert engine.run(run_id)["state"] == "running"

    asyncio.run(scenario())


def store_finished_run(engine: Engine, run_id: str, points: list[list[Any]]) -> None:
    """A finished run with ``points``, written straight into the store before the TUI opens."""
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(engine.paths.store)
    store.create_run(
        {"id": run_id, "name": run_id, "workload": "synthetic", "config": {},
         "state": "finished", "device": "cpu", "cwd": "/", "created": 1.0, "released": False},
        "made by the test",
    )
    store.add_metrics(run_id, points, 0, None)
    store.close()


def test_a_long_run_is_charted_from_screen_sized_views(engine: Engine) -> None:
    """200,000 points reach the TUI as a few hundred buckets; the curve is the exact EMA."""
    values = [2.0 + math.sin(s / 3000) + (s % 7) / 10 for s in range(200_000)]
    store_finished_run(engine, "long22", [[s, "loss", v, 1.7e9 + s] for s, v in enumerate(values)])

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            chart = app.query_one(LossChart)
            await until(pilot, lambda: chart.series and chart.series[0].curve)
            series = chart.series[0]
            columns = (chart.content_size.width - 8) * 2
            assert len(series.xs) <= 2 * 2 * columns  # min and max of two buckets a column
            assert min(v for v in series.ys if v is not None) == min(values)
            assert max(v for v in series.ys if v is not None) == max(values)
            assert series.curve is not None
            exact = ema_debiased(values, app.state.smoothing)[-1]
            assert series.curve[1][-1] == pytest.approx(exact, rel=1e-12)
            assert app.state.smoothed_last("long22") == pytest.approx(exact, rel=1e-12)

    asyncio.run(scenario())


def test_a_run_that_logs_train_and_val_loss_shows_its_training_loss(engine: Engine) -> None:
    """No plain ``loss``: the chart, the LOSS, BEST and EMA columns take ``train/loss``."""
    train = [3.0 - s / 100 for s in range(200)]
    points = [[s, "train/loss", v, 1.7e9 + s] for s, v in enumerate(train)]
    points += [[s, "val/loss", 9.0, 1.7e9 + s] for s in range(0, 200, 50)]
    store_finished_run(engine, "qual22", points)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            chart = app.query_one(LossChart)
            await until(pilot, lambda: chart.series and chart.series[0].curve)
            ys = [v for v in chart.series[0].ys if v is not None]
            assert min(ys) == min(train) and max(ys) == max(train)  # not val/loss's 9.0
            assert "train/loss" in str(app.query_one("#status", Static).render())
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.cell_text("qual22", "LOSS") != "-")
            assert table.cell_text("qual22", "LOSS") == format_number(train[-1])
            assert table.cell_text("qual22", "BEST") == format_number(min(train))
            exact = ema_debiased(train, app.state.smoothing)[-1]
            # (the EMA column's state comes in its own reply, after the listing's values)
            await until(pilot, lambda: app.state.smoothed_last("qual22") is not None)
            assert app.state.smoothed_last("qual22") == pytest.approx(exact, rel=1e-12)
            await pilot.press("m")  # the next metric after the one drawn
            await until(pilot, lambda: chart.series and max(
                v for v in chart.series[0].ys if v is not None) == 9.0)

    asyncio.run(scenario())


def test_redrawing_an_unchanged_chart_smooths_nothing_again(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=200", "--name", "done")
    engine.wait_state(run_id, *TERMINAL)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            chart = app.query_one(LossChart)
            for phase in ("smoothed by the daemon", "raw"):
                if phase == "raw":
                    while app.state.smoothing:
                        await pilot.press("s")
                curve = bool(app.state.smoothing)
                await until(
                    pilot,
                    lambda on=curve: chart.series and (chart.series[0].curve is not None) == on,
                )
                await until(pilot, lambda: chart.values_smoothed)  # drawn once
                await pilot.pause()
                done = chart.values_smoothed
                for _ in range(3):  # what refresh ticks and unchanged views do
                    app._draw_chart()
                    await pilot.pause()
                    chart.render_line(0)
                assert chart.values_smoothed == done

    asyncio.run(scenario())
