"""Early stopping of a sweep's runs (ASHA, in its stopping form): the rule as functions,
the rung watch over points as the daemon reads them, and a real sweep of real workers
whose worse runs the daemon stops while the better ones train to the end."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from engine.client.events import RunInfo
from engine.common.early_stop import StopRule, cutoff, stop_reason
from engine.common.experiment import ExperimentError, load_experiment
from engine.common.pbt import PbtRule
from engine.server.rungs import RungWatch
from tests.conftest import TERMINAL, Engine, wait_until
from tui.widgets.run_cells import state_text


def test_rungs_grow_by_eta_and_stop_below_the_runs_end() -> None:
    rule = StopRule(grace=10, eta=3)
    assert list(rule.rungs(300)) == [10, 30, 90, 270]
    assert list(rule.rungs(270)) == [10, 30, 90]  # a rung at the end judges nothing
    unbounded = rule.rungs(None)
    assert [next(unbounded) for _ in range(5)] == [10, 30, 90, 270, 810]


def test_a_rung_keeps_the_best_third_once_three_runs_reached_it() -> None:
    rule = StopRule(grace=10, eta=3)
    assert cutoff([5.0, 1.0], 3, "min") is None  # fewer than eta: every run goes on
    assert stop_reason(rule, "loss", 10, 5.0, [5.0, 1.0]) is None
    assert cutoff([5.0, 1.0, 3.0], 3, "min") == 1.0  # the best 1 of 3
    assert cutoff([5.0, 1.0, 3.0, 2.0], 3, "min") == 2.0  # the best 2 of 4
    assert stop_reason(rule, "loss", 10, 2.0, [5.0, 1.0, 3.0, 2.0]) is None
    said = stop_reason(rule, "loss", 10, 3.0, [5.0, 1.0, 3.0, 2.0])
    assert said == ("stopped early at step 10: loss 3 is not among the lowest 2 of the 4 runs "
                    "there (cutoff 2)")
    up = StopRule(grace=10, eta=2, metric="acc", mode="max")
    assert cutoff([0.5, 0.9, 0.7], 2, "max") == 0.7
    assert stop_reason(up, "acc", 10, 0.5, [0.5, 0.9, 0.7]) is not None
    assert stop_reason(up, "acc", 10, 0.7, [0.5, 0.9, 0.7]) is None


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"grace": 0}, "the first rung must be at step 1 or later"),
        ({"grace": 10, "eta": 1}, "eta must be 2 or more"),
        ({"grace": 10, "mode": "up"}, "the mode is min or max"),
        ({"grace": 1.5}, "grace and eta must be whole numbers"),
        ({"grace": True}, "grace and eta must be whole numbers"),
        ({"grace": 10, "metric": 3}, "the metric must be a name"),
        ({"grace": 10, "every": 3}, "an object of grace, eta, metric and mode"),
    ],
)
def test_a_wrong_rule_says_what_is_wrong(data: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        StopRule.from_wire(data)


def points(key: str, values: dict[int, float]) -> list[tuple[int, str, float, float]]:
    return [(step, key, value, 0.0) for step, value in sorted(values.items())]


def test_the_watch_says_each_rung_passed_with_the_mean_of_its_last_twentieth() -> None:
    watch = RungWatch(StopRule(grace=100, eta=2), total=1000)
    # Rung 100 averages steps 96..100 (its last 5 steps); a point past it says it is passed.
    first = points("loss", {s: 10.0 - s / 100 for s in range(0, 101)})
    assert watch.check(first) == []  # at the rung, not past it
    assert watch.check(points("loss", {101: 0.0})) == [(100, pytest.approx(9.02))]
    # A jump over two rungs judges both, each by the points before it.
    later = points("loss", {s: 1.0 for s in range(102, 200)} | {200: 3.0, 450: 0.5})
    assert watch.check(later) == [(200, pytest.approx((9 * 1.0 + 3.0) / 10)), (400, 3.0)]
    assert watch.next == 800


def test_the_watch_follows_the_training_loss_or_the_named_metric_and_skips_nan() -> None:
    watch = RungWatch(StopRule(grace=10), total=None)
    mixed = points("acc", {s: 0.5 for s in range(20)}) + points("train/loss", {9: 4.0, 10: 2.0})
    mixed += [(11, "train/loss", math.nan, 0.0), (12, "train/loss", 1.0, 0.0)]
    assert watch.check(mixed) == [(10, 2.0)]  # the loss, its NaN left out
    named = RungWatch(StopRule(grace=10, metric="val_loss"), total=None)
    sparse = points("loss", {s: 9.0 for s in range(30)}) + points("val_loss", {5: 7.0, 25: 6.0})
    assert named.check(sparse) == [(10, 7.0)]  # none in the window: the latest before it
    resumed = RungWatch(StopRule(grace=10), total=None, done=[10, 30])
    assert resumed.next == 90  # a restarted daemon does not judge a rung twice


def test_the_watch_says_once_when_the_first_rung_goes_by_without_the_named_metric() -> None:
    misspelt = RungWatch(StopRule(grace=10, metric="lsos"), total=None)
    assert misspelt.check(points("loss", {s: 1.0 for s in range(10)})) == []
    assert misspelt.take_missing() is None  # at the rung, not past it yet
    assert misspelt.check(points("acc", {11: 0.5}) + points("loss", {11: 1.0})) == []
    assert misspelt.take_missing() == (10, ["acc", "loss"])
    assert misspelt.take_missing() is None  # said once
    misspelt.check(points("loss", {s: 1.0 for s in range(12, 100)}))
    assert misspelt.take_missing() is None
    # A metric logged only now and then (every 25 steps) is not missing.
    sparse = RungWatch(StopRule(grace=10, metric="val_loss"), total=None)
    sparse.check(points("loss", {s: 9.0 for s in range(5)}) + points("val_loss", {5: 7.0}))
    sparse.check(points("loss", {s: 9.0 for s in range(6, 40)}))
    assert sparse.take_missing() is None


def test_a_misspelt_stop_metric_is_said_on_each_run_asha_and_tpe_alike(engine: Engine) -> None:
    """Neither stops nor learns from a metric no run logs: it is said, not kept silent."""
    asha = engine.cli("sweep", "synthetic", "lr=0.01,0.02", "steps=40", "--early-stop", "10",
                      "--stop-metric", "lsos", "--name", "asha", "--json")
    tpe = engine.cli("sweep", "synthetic", "lr=log(1e-3..1e-1)", "steps=20", "--search",
                     "tpe", "--trials", "3", "--startup", "2", "--stop-metric", "lsos",
                     "--name", "tpe", "--json")
    assert asha.code == 0 and tpe.code == 0, asha.err + tpe.err
    assert engine.cli("wait", "--sweep", "asha").code == 0
    assert engine.cli("wait", "--sweep", "tpe").code == 0
    for run in asha.json():
        said = [e["reason"] for e in engine.run(run["id"])["events"]]
        assert ("sweep asha judges its runs by 'lsos', which this run has not logged by step "
                "10, its first rung (it logs loss): it is not judged (is --stop-metric "
                "misspelt?)") in said, said
    trials = [r for r in engine.all_runs() if r["sweep"] == "tpe"]
    assert len(trials) == 3
    for run in trials:
        said = [e["reason"] for e in engine.run(run["id"])["events"]]
        assert sum(r.startswith("search of sweep tpe learns from 'lsos', which this trial "
                                "never logged (it logs loss): it cannot learn") for r in said) == 1
    assert "drawn at random (0 of the 2" in engine.run(trials[2]["id"])["events"][0]["reason"]


def test_an_experiment_file_may_hold_the_rule(tmp_path: Path) -> None:
    good = tmp_path / "exp.toml"
    good.write_text('workload = "synthetic"\n[sweep]\nlr = [0.1, 0.01]\n'
                    '[early_stop]\ngrace = 50\neta = 2\nmetric = "val_loss"\n')
    assert load_experiment(str(good)).early_stop == StopRule(50, 2, "val_loss")
    bad = tmp_path / "bad.toml"
    bad.write_text('workload = "synthetic"\n[early_stop]\ngrace = 50\neta = 1\n')
    with pytest.raises(ExperimentError, match=r"bad\.toml: field 'early_stop': early stop: eta"):
        load_experiment(str(bad))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--eta", "2"], "--eta goes with --early-stop GRACE; --stop-metric and --stop-mode "
                          "with --early-stop, --pbt or --search"),
        (["--early-stop", "0"], "must be at least 1"),
        (["--early-stop", "10", "--eta", "1"], "eta must be 2 or more"),
        (["--early-stop", "10", "--stop-mode", "up"], "invalid choice"),
    ],
)
def test_sweep_refuses_a_wrong_rule_in_one_line(engine: Engine, argv: list[str],
                                                 says: str) -> None:
    result = engine.cli("sweep", "synthetic", "lr=0.1,0.01", *argv)
    assert result.code == 2 and says in result.err and result.err.count("\n") == 1
    assert engine.cli("ls", "-q").out == ""  # nothing started


def test_a_rule_is_only_for_a_sweeps_runs(engine: Engine) -> None:
    with pytest.raises(Exception, match=r"early stopping is for the runs of a sweep "
                       r"\(traintop sweep --early-stop\)"):
        engine.call("start", workload="synthetic", early_stop={"grace": 10})
    pbt = PbtRule(10, axes={"lr": "log(0.0001..0.01)"}).wire()
    with pytest.raises(Exception, match=r"PBT is for the runs of a sweep \(traintop sweep --pbt\)"):
        engine.call("start", workload="synthetic", early_stop=pbt)
    assert engine.all_runs() == []


def _asha_sweep(engine: Engine, parallel: int, *argv: str) -> list[str]:
    """Two good learning rates, then two that barely learn, in a queue of ``parallel``
    slots: the ids of the four runs."""
    assert engine.cli("queue", "asha", "--parallel", str(parallel)).code == 0
    started = engine.cli("sweep", "synthetic", "lr=0.02,0.01,1e-6,1e-7", *argv, "--queue",
                         "asha", "--json")
    assert started.code == 0, started.err
    return [run["id"] for run in started.json()]


def test_a_sweep_stops_its_worse_runs_and_lets_the_better_finish(engine: Engine) -> None:
    # Two good learning rates first, then two that barely learn: these reach step 50
    # after the first two have (two slots), and are not among the best third there.
    ids = _asha_sweep(engine, 2, "steps=1000", "sleep=0.005", "--early-stop", "50")
    ends = {run_id: engine.wait_state(run_id, *TERMINAL, timeout=120) for run_id in ids}
    good, bad = ids[:2], ids[2:]
    for run_id in good:
        assert ends[run_id]["state"] == "finished" and ends[run_id]["step"] == 1000
    for run_id in bad:
        run = ends[run_id]
        assert run["state"] == "killed" and run["step"] < 1000, run
        assert run["exit_reason"].startswith("stopped early at step 50: loss "), run
        assert run["stopped_early"] == run["exit_reason"]
        assert run["early_stop"] == {"grace": 50, "eta": 3, "metric": None, "mode": "min"}
    listed = engine.cli("ls", "--state", "killed")
    assert listed.out.count("killed (stopped early at step 50)") == 2, listed.out
    shown = engine.cli("show", bad[0]).out
    assert "from step 50, every x3 steps, runs not among the lowest 1/3" in shown
    waited = engine.cli("wait", *ids)  # the sweep ended as it was meant to: success
    assert waited.code == 0 and "(stopped early at step 50:" in waited.out
    # The values at each rung are kept in the store, for the runs that come later.
    before = rung_rows(engine)
    rung50 = {run: value for _, step, run, value in before if step == 50}
    assert set(rung50) == set(ids)
    assert max(rung50[r] for r in good) < min(rung50[r] for r in bad)
    # A store made again from the run directories has them again, to the bit: made from
    # the spools as the daemon made them (a run stopped at a rung may bring one more,
    # from steps it took before its signal landed).
    assert engine.cli("engine", "stop").code == 0
    rebuilt = engine.cli("engine", "rebuild")
    assert rebuilt.code == 0, rebuilt.err
    after = rung_rows(engine)
    assert before <= after
    assert all(run in bad and step > 50 for _, step, run, _ in after - before)
    # And why the rule stopped each run (its directory keeps it): still a success.
    listed = engine.cli("ls", "--state", "killed")
    assert listed.out.count("killed (stopped early at step 50)") == 2, engine.cli("ls").out
    assert engine.run(bad[0])["exit_reason"] == ends[bad[0]]["exit_reason"]
    assert engine.cli("wait", *ids).code == 0


def test_a_run_of_an_early_stopped_sweep_whose_loss_diverges_is_stopped_not_paused(
    engine: Engine,
) -> None:
    # A search left overnight: a run gone NaN would sit paused, never judged at a rung,
    # and 'wait' would call the sweep a failure. The rule stops it, as it stops a bad run.
    assert engine.cli("queue", "q", "--parallel", "4").code == 0
    started = engine.cli("sweep", "synthetic", "lr=0.02,0.01", "nan_at=-1,30", "steps=300",
                         "sleep=0.005", "--early-stop", "100", "--queue", "q", "--json")
    assert started.code == 0, started.err
    runs = {run["id"]: run for run in started.json()}
    ends = {run_id: engine.wait_state(run_id, *TERMINAL, timeout=120) for run_id in runs}
    for run_id, run in ends.items():
        if runs[run_id]["config"]["nan_at"] == 30:
            assert run["state"] == "killed" and run["step"] < 300, run
            assert run["stopped_early"] == run["exit_reason"] == "diverged: loss nan at step 30"
            assert run["diverged"] == "loss nan at step 30"
        else:
            assert run["state"] == "finished" and run["step"] == 300, run
    listed = engine.cli("ls", "--state", "killed")
    assert listed.out.count("killed (diverged)") == 2, listed.out
    waited = engine.cli("wait", *runs)  # the sweep ended as its rule meant: success
    assert waited.code == 0 and "(diverged: loss nan at step 30)" in waited.out, waited.out
    cell = state_text(RunInfo(id="dddd01", name="r", state="killed", workload="synthetic",
                              step=31, condition="diverged",
                              stopped_early="diverged: loss nan at step 30"))
    assert cell.plain.endswith("diverged") and "red" not in str(cell.style)


def rung_rows(engine: Engine) -> set[tuple[str, int, str, float]]:
    """Every value of every sweep's rungs in the store: (sweep, step, run, value)."""
    db = sqlite3.connect(engine.paths.store)
    try:
        return set(db.execute("SELECT sweep, step, run, value FROM rungs"))
    finally:
        db.close()


def test_the_tui_says_stopped_early_without_alarm() -> None:
    reason = "stopped early at step 50: loss 3 is not among the lowest 1 of the 3 runs there"
    stopped = RunInfo(id="dddd01", name="r", state="killed", workload="synthetic", step=52,
                      condition="stopped early at step 50", stopped_early=reason)
    cell = state_text(stopped)
    assert cell.plain.endswith("stopped early") and "red" not in str(cell.style)
    killed = RunInfo(id="dddd02", name="r", state="killed", workload="synthetic", step=52)
    assert state_text(killed).plain.endswith("killed")


def test_a_dry_run_says_the_rule(engine: Engine) -> None:
    result = engine.cli("sweep", "synthetic", "lr=0.1,0.01", "--early-stop", "10", "--eta",
                        "2", "--stop-metric", "val_loss", "--dry-run")
    assert result.code == 0, result.err
    assert ("early stop: from step 10, every x2 steps, runs not among the lowest 1/2 of "
            "val_loss stop") in result.out



def test_a_run_a_rule_stopped_is_killed_by_the_next_daemon_if_the_last_died_first(
    engine: Engine,
) -> None:
    started = engine.cli("start", "synthetic", "steps=100000", "sleep=0.01", "--json")
    run_id = started.json()["id"]
    engine.wait_step(run_id, 5)
    # As a daemon leaves it that stored a rung's verdict and died before the kill went out
    # (the run trains on, as runs outlive their daemon).
    assert engine.cli("engine", "stop").code == 0
    reason = "stopped early at step 5: loss 9 is above the rung's cutoff 1 (of 4 runs)"
    db = sqlite3.connect(engine.paths.store)
    with db:
        db.execute("UPDATE runs SET stopped_early = ? WHERE id = ?", (reason, run_id))
    db.close()
    assert engine.cli("ls", "-q").out.split() == [run_id]  # the next daemon
    ended = engine.wait_state(run_id, *TERMINAL)
    assert ended["state"] == "killed" and ended["exit_reason"] == reason


def test_a_verdict_read_after_a_runs_last_step_lets_it_finish(engine: Engine) -> None:
    # A daemon that reads a rung late (stopped, or behind on a loaded machine) finds runs
    # that have trained every step: a stop saves nothing then, and 'killed' would be a lie.
    ids = _asha_sweep(engine, 4, "steps=600", "sleep=0.01", "--early-stop", "500")
    for run_id in ids:
        engine.wait_process(run_id, 1)
    assert engine.cli("engine", "stop").code == 0  # the runs train on without it
    spools = [engine.paths.run_dir(run_id).spool for run_id in ids]
    wait_until(lambda: all(b'"finished"' in path.read_bytes() for path in spools),
               "every run trained its last step", timeout=120)
    ends = {run_id: engine.wait_state(run_id, *TERMINAL) for run_id in ids}  # a new daemon
    assert {(run["state"], run["step"]) for run in ends.values()} == {("finished", 600)}, ends
    assert all(run["stopped_early"] is None for run in ends.values())
    assert {step for _, step, _, _ in rung_rows(engine)} == {500}  # the verdicts are kept
    assert engine.cli("wait", *ids).code == 0
