"""Forking one run into several variants at once (``traintop fork RUN lr=A,B,C``, the
fork dialog with a list): one checkpoint of the parent serves every child, so their
curves part from one step. Real daemon, real workers, real store."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from textual.widgets import Input, Static

from engine.client.cli.common import POLL_EACH_MAX
from engine.client.client import EngineError
from tests.conftest import TERMINAL, Engine
from tests.test_tui import start, until
from tui.app import TraintopApp
from tui.screens.dialogs import ForkDialog
from tui.widgets.loss_chart import LossChart
from tui.widgets.runs_table import RunsTable

SLOW = ["sleep=0.01", "seed=3"]


def test_a_list_of_values_forks_once_per_value_from_one_checkpoint(engine: Engine) -> None:
    parent = start(engine, "synthetic", "steps=300", *SLOW, "--name", "base")
    engine.wait_step(parent, 25)
    result = engine.cli("fork", parent, "lr=0.005,0.01,0.03", "--json")
    assert result.code == 0, result.err
    forks = result.json()
    assert [f["name"] for f in forks] == ["base-lr5e-3", "base-lr0.01", "base-lr0.03"]
    assert {f["sweep"] for f in forks} == {"base"}  # grouped, named for the parent
    parent_config = engine.run(parent)["config"]
    for fork, lr in zip(forks, (0.005, 0.01, 0.03), strict=True):
        assert fork["parent_id"] == parent
        assert fork["config"] == {**parent_config, "lr": lr}  # nothing else changed
    # One checkpoint, asked once, answers all three: one step, one file.
    assert len({f["fork_step"] for f in forks}) == 1
    assert len({f["launch_from"] for f in forks}) == 1
    step = forks[0]["fork_step"]
    assert step >= 25
    losses = {}
    for fork in forks:
        assert engine.wait_state(fork["id"], *TERMINAL)["state"] == "finished"
        losses[fork["id"]] = engine.losses(fork["id"])
        assert min(losses[fork["id"]]) == step
    first = [losses[f["id"]][step] for f in forks]
    assert first[0] == first[1] == first[2]  # the same weights at the step they part
    later = [losses[f["id"]][step + 20] for f in forks]
    assert len(set(later)) == 3  # then each lr takes its own path
    assert sorted(engine.run(parent)["children"]) == sorted(f["id"] for f in forks)


def test_random_values_are_drawn_trials_times_and_a_bad_value_forks_nothing(
    engine: Engine,
) -> None:
    parent = start(engine, "synthetic", "steps=40", "--name", "p")
    engine.wait_state(parent, *TERMINAL)
    before = len(engine.all_runs())

    bad = engine.cli("fork", parent, "lr=0.01,fast", "steps=80")
    assert bad.code != 0 and "fast" in bad.err and len(bad.err.strip().splitlines()) == 1
    untried = engine.cli("fork", parent, "lr=log(1e-4..1e-2)")
    assert untried.code == 2 and "--trials" in untried.err
    assert len(engine.all_runs()) == before  # nothing made

    # More forks than the command polls one by one: waited for together, from the
    # listing, and each reported in full once it trains (or has finished).
    trials = POLL_EACH_MAX + 4
    drawn = engine.cli("fork", parent, "lr=log(1e-4..1e-2)", "steps=80", "--trials",
                       str(trials), "--name", "drop", "--json")
    assert drawn.code == 0, drawn.err
    forks = drawn.json()
    assert {f["state"] for f in forks} <= {"running", "finished"}
    assert all(f["events"] and f["lineage"] for f in forks)
    lrs = [f["config"]["lr"] for f in forks]
    assert len(set(lrs)) == trials and all(1e-4 <= lr <= 1e-2 for lr in lrs)
    assert {f["sweep"] for f in forks} == {"drop"}
    assert all(f["name"].startswith("drop-lr") for f in forks)
    # Of a finished parent: its final checkpoint, for each.
    assert {f["fork_step"] for f in forks} == {40}
    for fork in forks:
        assert engine.wait_state(fork["id"], *TERMINAL)["state"] == "finished"
        assert sorted(engine.losses(fork["id"])) == list(range(40, 80))
    # The same seed draws the same values again (a replayable choice).
    again = engine.cli("fork", parent, "lr=log(1e-4..1e-2)", "steps=80", "--trials", str(trials),
                       "--json", "--no-wait").json()
    assert [f["config"]["lr"] for f in again] == lrs


def test_the_daemon_refuses_malformed_variants_whole(engine: Engine) -> None:
    parent = start(engine, "synthetic", "steps=20")
    engine.wait_state(parent, *TERMINAL)
    before = len(engine.all_runs())
    cases = [
        ({"variants": "lr=0.1"}, "variants"),
        ({"variants": []}, "variants"),
        ({"variants": [["lr=0.1"], "lr=0.2"]}, "variants"),
        ({"variants": [["lr=0.1"], ["lr=0.2"]], "names": ["a"]}, "one name per variant"),
        ({"variants": [["lr=0.1"], ["lr=0.2"]], "names": ["a", "a"]}, "same name"),
        ({"variants": [["lr=0.1"]], "names": [None]}, "list of strings"),
        ({"variants": [["lr=0.1"], ["lr=nope"]]}, "expected a number"),
        ({"variants": [["lr=0.1"]], "names": ["bad name!"]}, "name"),
    ]
    for params, said in cases:
        with pytest.raises(EngineError, match=said):
            engine.call("fork_variants", run=parent, **params)
    assert len(engine.all_runs()) == before


def test_the_fork_dialog_forks_a_list_of_values_into_a_group(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=5000", "sleep=0.01", "--name", "keys")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(110, 36)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == run_id)
            await pilot.press("f")
            dialog = await until(pilot, lambda: isinstance(app.screen, ForkDialog) and app.screen)
            count = dialog.query_one("#fork-count", Static)
            assert "1 fork" in str(count.render())
            dialog.query_one("#cfg-lr", Input).value = "0.002,0.005"
            await until(pilot, lambda: "2 forks" in str(count.render()))
            dialog.query_one("#cfg-lr", Input).value = "log(1e-4..1e-2)"
            await until(pilot, lambda: "--trials" in str(count.render()))
            await pilot.press("ctrl+s")  # refused in the dialog, which stays open
            await pilot.pause(0.3)
            assert isinstance(app.screen, ForkDialog)
            # Early stopping or PBT judge forks made together, as 'fork --early-stop'.
            dialog.query_one("#cfg-lr", Input).value = "0.002"
            dialog.query_one("#early-stop", Input).value = "50"
            await until(pilot, lambda: "forks made together" in str(count.render()))
            dialog.query_one("#cfg-lr", Input).value = "0.002,0.005"
            await until(pilot, lambda: "judged by early stop" in str(count.render()))
            dialog.query_one("#pbt", Input).value = "100"
            await until(pilot, lambda: "not both" in str(count.render()))
            dialog.query_one("#pbt", Input).value = ""
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, ForkDialog))
            forks = await until(pilot, lambda: sorted(
                (r for r in app.state.runs.values() if r.parent_id == run_id),
                key=lambda r: r.config["lr"]))
            assert len(forks) == 2
            assert [f.config["lr"] for f in forks] == [0.002, 0.005]
            assert {f.sweep for f in forks} == {"keys"}
            assert [engine.call("get_run", run=f.id)["early_stop"]["grace"]
                    for f in forks] == [50, 50]
            await until(pilot, lambda: table.selected_id in {f.id for f in forks})
            steps = {engine.wait(f.id, lambda r: r["fork_step"] is not None)["fork_step"]
                     for f in forks}
            assert len(steps) == 1  # one checkpoint for both
            # The group's header sits under the run they were forked from, the forks
            # under it, named by their values; the header charts the parent with them.
            by_age = sorted(forks, key=lambda r: (r.created, r.id))
            await until(pilot, lambda: table.order == [run_id, "sweep:keys",
                                                       *(f.id for f in by_age)])
            assert [table.shown_name(f.id) for f in forks] == ["lr=2e-3", "lr=5e-3"]
            table.select("sweep:keys")
            chart = app.query_one(LossChart)
            await until(pilot, lambda: {s.run_id for s in chart.series}
                        == {run_id, *(f.id for f in forks)})
            assert chart.markers == [(float(steps.pop()), "2 forks")]  # one, where they part

    asyncio.run(scenario())


def test_forks_made_together_are_early_stopped_from_their_fork_step(engine: Engine) -> None:
    parent = start(engine, "synthetic", "steps=100", "--name", "p")
    engine.wait_state(parent, *TERMINAL)
    assert engine.cli("queue", "q", "--parallel", "4").code == 0
    alone = engine.cli("fork", parent, "lr=0.01", "--early-stop", "30")
    assert alone.code == 2 and "forks made together" in alone.err
    made = engine.cli("fork", parent, "lr=0.002,0.005,0.01,0.02", "steps=400", "sleep=0.002",
                      "--early-stop", "30", "--eta", "2", "--queue", "q",
                      "--no-divergence-pause", "--json")
    assert made.code == 0, made.err
    forks = made.json()
    assert {f["fork_step"] for f in forks} == {100}
    ended = [engine.wait_state(f["id"], *TERMINAL, timeout=120) for f in forks]
    # The rungs count from the fork step: 100 + 30, x2 after (not step 30, 60, 120...).
    db = sqlite3.connect(engine.paths.store)
    rungs = sorted({step for (step,) in db.execute("SELECT step FROM rungs")})
    db.close()
    assert rungs and rungs[0] == 130 and set(rungs) <= {130, 160, 220, 340}
    stopped = [r for r in ended if r["stopped_early"]]
    assert stopped and len(stopped) < len(forks)  # the worse stop, the better go on
    for run in stopped:
        step = int(run["stopped_early"].split(":")[0].rsplit(" ", 1)[1])
        assert step in rungs and run["state"] == "killed"
    assert "from step 130 (30 after its fork step)" in engine.cli("show", forks[0]["id"]).out
