"""Fault tolerance: runs checkpoint as they go, and the engine takes a failed one up again.

A real daemon and real workers: a run's worker is SIGKILLed (as the OOM killer or a
reboot would end it) and, with retries left, the run goes on from its own newest
checkpoint and ends with every step's loss once, the same as a run never killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from engine.client.cli.reads import run_line_values
from engine.client.events import RunInfo
from engine.common.experiment import ExperimentError, load_experiment
from engine.common.format import format_number
from engine.rundir.checkpoint_files import latest_complete
from engine.rundir.disk_space import FAKE_DISK_FULL_ENV
from engine.rundir.paths import read_json
from tests.conftest import TERMINAL, Engine, wait_until
from tests.test_tui import screen_of, start, until
from tui.app import TraintopApp
from tui.chart_math import DebiasedEma
from tui.screens.dialogs import NewRunDialog
from tui.screens.sweep_dialog import SweepDialog
from tui.widgets.run_cells import state_text
from tui.widgets.runs_table import RunsTable

STEPS = 300
SLOW = "sleep=0.01"  # ~3 s of training: time to kill it in the middle


def _start(engine: Engine, *argv: str) -> str:
    result = engine.cli("start", "synthetic", *argv, "--json")
    assert result.code == 0, result.err
    run_id: str = result.json()["id"]
    return run_id


def _events(engine: Engine, run_id: str) -> list[str]:
    return [e["reason"] for e in engine.call("get_run", run=run_id)["events"]]


def _kill_worker(engine: Engine, run_id: str, past: int) -> int:
    """SIGKILL the run's worker once it is past step ``past``; returns the step of its
    newest complete checkpoint then (the store's step lags the worker's)."""
    run = engine.wait_process(run_id, past)
    assert run["state"] == "running", run
    os.killpg(int(run["pgid"]), signal.SIGKILL)
    newest = latest_complete(engine.paths.run_dir(run_id).checkpoints)
    assert newest is not None
    return newest[0]


def test_a_killed_run_goes_on_from_its_own_checkpoint_and_ends_as_if_never_killed(
    engine: Engine,
) -> None:
    reference = _start(engine, f"steps={STEPS}", SLOW, "--name", "whole")
    run_id = _start(engine, f"steps={STEPS}", SLOW, "--checkpoint-every", "50",
                    "--retries", "2", "--name", "killed")
    newest = _kill_worker(engine, run_id, 130)
    ended = engine.wait_state(run_id, *TERMINAL)
    assert ended["state"] == "finished" and ended["step"] == STEPS
    assert ended["retried"] == 1 and ended["retries"] == 2
    events = _events(engine, run_id)
    retry = next(e for e in events if e.startswith("retry 1 of 2"))
    assert newest >= 100 and int(retry.rsplit("step ", 1)[1]) == newest
    assert retry.startswith("retry 1 of 2 after killed by signal SIGKILL")
    # Each step's loss once, and bit for bit the run that was never killed.
    engine.wait_state(reference, *TERMINAL)
    points = engine.points(run_id)
    assert [s for s, _ in points] == list(range(STEPS))
    assert dict(points) == engine.losses(reference)
    # The newest of its own checkpoints was kept while it trained; the final one
    # replaced them all.
    files = os.listdir(engine.paths.run_dir(run_id).checkpoints)
    assert files == ["final.pt"], files
    shown = engine.cli("show", run_id).out
    assert "checkpoints every 50 steps; 1 of 2 retries used" in shown
    listed = engine.cli("ls", run_id).out
    assert "finished ↻1" in listed and "; ↻N: taken up again N times after failing)" in listed
    # A store made again from the run directories drops the same points.
    assert engine.cli("engine", "stop").code == 0
    rebuilt = engine.cli("engine", "rebuild")
    assert rebuilt.code == 0, rebuilt.err
    assert engine.points(run_id) == points


def test_retries_run_out_and_the_run_fails_for_good(engine: Engine) -> None:
    """A run that fails wherever it starts (a bug): two retries from the start (it has no
    checkpoint), then it stays failed, with its points from one attempt only; the queue
    is not paused by the failures it retried."""
    assert engine.cli("queue", "strict", "--pause-on-failure").code == 0
    run_id = _start(engine, "steps=100", "fail_at=30", "--retries", "2", "--queue", "strict")
    ended = engine.wait(run_id, lambda r: r["state"] == "failed" and r["retried"] == 2)
    assert "synthetic failure at step 30" in (ended["exit_reason"] or "")
    retries = [e for e in _events(engine, run_id) if e.startswith("retry ")]
    assert [r.split(" after ")[0] for r in retries] == ["retry 1 of 2", "retry 2 of 2"]
    assert all(r.endswith("from the start (it has no checkpoint)") for r in retries)
    assert [s for s, _ in engine.points(run_id)] == list(range(30))
    queue = next(q for q in engine.call("queues") if q["name"] == "strict")
    assert queue["paused"] and f"run {run_id} failed" in queue["reason"]


def test_a_checkpoint_the_disk_refuses_is_skipped_and_training_goes_on(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    flag = tmp_path / "disk-is-full"
    monkeypatch.setenv(FAKE_DISK_FULL_ENV, str(flag))  # the daemon and its workers inherit it
    run_id = _start(engine, "steps=400", SLOW, "--checkpoint-every", "40")
    engine.wait_step(run_id, 50)
    flag.touch()  # the state directory's disk is full from now
    stderr = engine.paths.run_dir(run_id).stderr
    try:
        wait_until(lambda: "no checkpoint at step" in stderr.read_text(), timeout=30)
        skipped = time.time()
        time.sleep(1.0)  # its points wait in the worker meanwhile: the spool is refused
    finally:
        flag.unlink()
    ended = engine.wait_state(run_id, *TERMINAL)
    assert ended["state"] == "finished" and ended["step"] == 400
    with engine.client() as client:
        times = [t for _s, _k, _v, t in client.all_metrics(run_id, "loss")]
    assert sum(skipped < t < skipped + 1.0 for t in times) > 10  # it trained on, full disk
    line = next(x for x in stderr.read_text().splitlines() if "no checkpoint" in x)
    assert line.endswith("(the disk is full); training goes on"), line


@pytest.mark.parametrize(("argv", "said"), [
    (["--checkpoint-every", "5s"], "is under 10 s"),
    (["--checkpoint-every", "ten"], "is not a number of steps (500) or a time"),
    (["--checkpoint-every", "0.5"], "steps must be a whole number"),
    (["--retries", "-1"], "retries must be 0 to 100, not -1"),
])
def test_a_bad_interval_or_retry_count_is_one_line_and_starts_nothing(
    engine: Engine, argv: list[str], said: str,
) -> None:
    result = engine.cli("start", "synthetic", "steps=10", *argv)
    assert result.code != 0
    assert said in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert engine.all_runs() == []


def test_a_fork_keeps_its_parents_interval_and_retries_unless_given(engine: Engine) -> None:
    parent = _start(engine, "steps=200", SLOW, "--checkpoint-every", "10m", "--retries", "3")
    engine.wait_step(parent, 20)
    same = engine.cli("fork", parent, "lr=0.01", "--json", "--no-wait").json()
    other = engine.cli("fork", parent, "lr=0.03", "--retries", "0", "--checkpoint-every",
                       "off", "--json", "--no-wait").json()
    assert (same["checkpoint_every"], same["retries"]) == ({"seconds": 600.0}, 3)
    assert (other["checkpoint_every"], other["retries"]) == (None, 0)
    again = engine.cli("restart", parent, "--json", "--no-wait").json()  # so does a restart
    assert (again["checkpoint_every"], again["retries"]) == ({"seconds": 600.0}, 3)
    db = sqlite3.connect(engine.paths.store)
    try:
        kept = db.execute("SELECT checkpoint_every FROM runs WHERE id = ?", (parent,)).fetchone()
    finally:
        db.close()
    assert kept == ('{"seconds": 600.0}',)
    engine.cli("kill", parent, same["id"], other["id"], again["id"])


def test_the_new_run_dialog_sets_the_interval_and_retries(engine: Engine) -> None:
    first = _start(engine, "steps=5", "--checkpoint-every", "2m", "--retries", "4")
    engine.wait_state(first, *TERMINAL)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.query_one(RunsTable).selected_id == first)
            await pilot.press("N")  # retry with changes: the run's own settings filled in
            dialog = await screen_of(pilot, app, NewRunDialog)
            assert dialog.query_one("#every", Input).value == "120s"
            assert dialog.query_one("#retries", Input).value == "4"
            dialog.query_one("#retries", Input).value = "two"
            await pilot.press("ctrl+s")
            error = dialog.query_one("#dialog-error")
            await until(pilot, lambda: "retries: 'two' is not a whole number"
                        in str(error.render()))
            dialog.query_one("#retries", Input).value = "2"
            dialog.query_one("#every", Input).value = "50"
            dialog.query_one("#name", Input).value = "from-dialog"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, NewRunDialog))
            await pilot.press("S")  # a sweep's runs, the same two fields
            sweep = await screen_of(pilot, app, SweepDialog)
            sweep.query_one("#axes", Input).value = "lr=0.01,0.02 steps=5"
            sweep.query_one("#every", Input).value = "10m"
            sweep.query_one("#retries", Input).value = "1"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, SweepDialog))

    asyncio.run(scenario())
    made = next(r for r in engine.all_runs() if r["name"] == "from-dialog")
    assert (made["checkpoint_every"], made["retries"]) == ({"steps": 50}, 2)
    swept = [r for r in engine.all_runs() if r["sweep"]]
    assert len(swept) == 2
    assert all((r["checkpoint_every"], r["retries"]) == ({"seconds": 600.0}, 1) for r in swept)


def test_a_fork_with_no_checkpoint_of_its_own_goes_on_from_the_one_it_started_from(
    engine: Engine,
) -> None:
    parent = _start(engine, "steps=400", SLOW)
    engine.wait_step(parent, 30)
    forked = engine.cli("fork", parent, "fail_at=150", "--retries", "1", "--json")
    assert forked.code == 0, forked.err
    child = forked.json()
    start = int(child["fork_step"])
    ended = engine.wait(child["id"], lambda r: r["state"] == "failed" and r["retried"] == 1)
    retry = next(e for e in _events(engine, child["id"]) if e.startswith("retry 1 of 1"))
    assert retry.endswith(f"from its checkpoint at step {start}"), retry
    assert [s for s, _ in engine.points(child["id"])] == list(range(start, 150))
    # By hand too: `resume` of the failed fork goes on from the same checkpoint.
    resumed = engine.call("resume", run=ended["id"])
    assert resumed["resumed_from"] == start
    engine.wait(child["id"], lambda r: r["state"] == "failed" and r["generation"] == 3)
    assert [s for s, _ in engine.points(child["id"])] == list(range(start, 150))
    engine.cli("kill", parent)


def test_an_experiment_file_sets_the_interval_and_retries(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('workload = "synthetic"\ncheckpoint_every = 500\nretries = 2\n')
    loaded = load_experiment(str(good))
    assert (loaded.checkpoint_every, loaded.retries) == ("500", 2)
    bad = tmp_path / "bad.toml"
    bad.write_text('workload = "synthetic"\ncheckpoint_every = "2s"\n')
    with pytest.raises(ExperimentError, match=r"^bad.toml: field 'checkpoint_every': "
                       r"checkpoint interval '2s' is under 10 s"):
        load_experiment(str(bad))


def test_a_retried_run_is_marked_after_its_state_in_ls_and_the_table() -> None:
    run = RunInfo(id="e5e5e5", name="r", state="running", workload="synthetic", step=9,
                  retries=3, retried=2)
    assert run_line_values(run)[2] == "running ↻2"
    assert state_text(run).plain == "▶ running ↻2"
    never = RunInfo(id="f6f6f6", name="r", state="running", workload="synthetic", step=9)
    assert run_line_values(never)[2] == "running" and state_text(never).plain == "▶ running"


# A run whose first attempt logs lows its retry never reaches, and is killed once the
# test has seen them: the steps after its checkpoint at 100 are logged again, higher.
FICKLE = """
import os, signal, time

def train(run):
    first = not (run.dir / "tried").exists()
    (run.dir / "tried").touch()
    for step in run.steps(104):
        run.log(loss=0.001 if first and step >= 100 else 10.0 + step)
        while first and step == 102:
            run.flush()
            if (run.dir / "die").exists():
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.05)
"""


def test_the_table_forgets_the_values_of_the_points_a_retry_dropped(
    engine: Engine, tmp_path: Path,
) -> None:
    script = tmp_path / "fickle.py"
    script.write_text(FICKLE)
    run_id = start(engine, str(script), "--checkpoint-every", "50", "--retries", "1")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            state = app.state
            await until(pilot, lambda: run_id in state.runs
                        and state.runs[run_id].best.get("loss") == 0.001)
            (engine.paths.run_dir(run_id).path / "die").touch()
            await until(pilot, lambda: state.runs[run_id].retried == 1
                        and state.runs[run_id].state == "finished", timeout=60)
            losses = [v for _, v in sorted(engine.losses(run_id).items())]
            run = state.runs[run_id]
            # The lowest and latest loss of what is stored now, not the dropped 0.001.
            assert run.best["loss"] == min(losses) == 10.0
            assert run.last["loss"] == losses[-1]
            # The EMA column is the daemon's over the stored points, dropped ones not in
            # (4 points after the checkpoint: the EMA still remembers the ones before).
            ema = DebiasedEma(state.smoothing)
            expected = [v for v in ema.extend(losses) if v is not None][-1]
            await until(pilot, lambda: state.smoothed_last(run_id) == pytest.approx(expected))
            table = app.query_one(RunsTable)
            best = format_number(min(losses))
            await until(pilot, lambda: table.cell_text(run_id, "BEST") == best)

    asyncio.run(scenario())
    assert "3 points from step 100 on dropped" in " ".join(_events(engine, run_id))


def test_a_fork_of_a_run_that_dies_before_serving_it_starts_from_its_newest_checkpoint(
    engine: Engine,
) -> None:
    """The parent is stopped (it serves no fork), asked for a fork and SIGKILLed: the fork
    goes on from the parent's newest checkpoint, kept as its own file (the parent, retried,
    deletes its older checkpoints as it writes newer ones)."""
    parent = _start(engine, f"steps={STEPS}", SLOW, "--checkpoint-every", "50",
                    "--retries", "1")
    run = engine.wait_step(parent, 120)
    os.killpg(int(run["pgid"]), signal.SIGSTOP)
    found = latest_complete(engine.paths.run_dir(parent).checkpoints)
    assert found is not None
    newest = found[0]
    forked = engine.cli("fork", parent, "lr=0.02", "--json", "--no-wait")
    assert forked.code == 0, forked.err
    child = forked.json()
    assert child["awaiting"] == "checkpoint"
    os.killpg(int(run["pgid"]), signal.SIGKILL)
    ended = engine.wait_state(child["id"], *TERMINAL)
    assert ended["state"] == "finished" and ended["fork_step"] == newest
    assert (f"forked from {parent} at step {newest} (its newest checkpoint: it failed "
            "before the one asked for); queued") in _events(engine, child["id"])
    assert [s for s, _ in engine.points(child["id"])] == list(range(newest, STEPS))
    # The parent went on too, and its newer checkpoints did not take the fork's away.
    assert engine.wait_state(parent, *TERMINAL)["state"] == "finished"
    kept = engine.paths.run_dir(parent).checkpoints / f"step-{newest}.pt"
    assert kept.is_file()
    assert read_json(engine.paths.run_dir(child["id"]).launch)["resume_from"] == str(kept)
