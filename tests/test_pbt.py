"""Population based training: the rule as functions (ranking, exploring), the command
line, and a real population of real workers whose worst run the daemon replaces by a
fork of one of the best, its learning rate moved, round after round."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engine.client.events import RunInfo
from engine.common.early_stop import StopRule
from engine.common.experiment import ExperimentError, load_experiment
from engine.common.pbt import PbtRule, axes_of, perturbed, ranked, sweep_rule
from engine.common.sweep import parse_tokens
from engine.server.population import Population
from engine.server.store import Store
from tests.conftest import TERMINAL, Engine
from tests.test_daemon_scale import _stored_run
from tui.run_tree import TreeRow
from tui.sweep_groups import sweep_groups
from tui.table_items import row_names
from tui.widgets.run_cells import state_text

GRID = ["0.03", "0.01", "1e-4", "1e-5"]


def test_the_worst_and_the_best_quarter_are_as_many_and_never_the_same_runs() -> None:
    values = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 0.5, "e": 9.0, "f": 4.0, "g": 5.0, "h": 6.0}
    assert ranked(values, 0.25, "min") == (["e", "h"], ["d", "a"])  # worst first, best first
    assert ranked(values, 0.25, "max") == (["d", "a"], ["e", "h"])
    assert ranked({"a": 1.0, "b": 2.0}, 0.5, "min") == (["b"], ["a"])
    assert ranked({"a": 1.0, "b": 2.0, "c": 3.0}, 0.5, "min") == (["c"], ["a"])  # not b twice
    assert ranked({"a": 1.0}, 0.25, "min") == ([], [])  # one run: nobody to copy
    assert ranked({"b": 1.0, "a": 1.0, "c": 0.0}, 0.25, "min") == (["b"], ["c"])  # ties: by id


def test_exploring_moves_a_number_by_a_fifth_within_its_range_or_draws_it_again() -> None:
    spec = parse_tokens(["lr=log(1e-4..1e-2)", "layers=int(2..6)", "batch=32,64,128",
                         "seed=0,1", "steps=100"])
    axes = axes_of(spec)
    assert axes == {"batch": ["32", "64", "128"], "lr": "log(0.0001..0.01)",
                    "layers": "int(2..6)"}  # the seed and the fixed steps are not explored
    moving = PbtRule(10, resample=0.0, axes=axes)
    rng = random.Random(0)
    for _ in range(50):
        overrides, changes = perturbed(moving, {"lr": 0.001, "layers": 2, "batch": 64}, rng)
        new = dict(o.split("=") for o in overrides)
        assert float(new["lr"]) in (pytest.approx(0.0008), pytest.approx(0.0012))
        assert new["layers"] in ("3", "2")  # 2 x 0.8 and 2 x 1.2 round to 2: a step of one,
        assert new["batch"] in ("32", "128")  # down to the range's low end, or a neighbour
        assert changes[0].startswith("batch 64 → ") and "value" in changes[0]
    at_top = perturbed(moving, {"lr": 0.0099, "layers": 6, "batch": 128}, random.Random(3))[0]
    assert float(at_top[1].split("=")[1]) <= 0.01 and at_top[0] == "batch=64"
    drawing = PbtRule(10, resample=1.0, axes={"lr": "log(0.0001..0.01)"})
    drawn = [float(perturbed(drawing, {"lr": 0.001}, rng)[0][0].split("=")[1])
             for _ in range(50)]
    assert all(1e-4 <= v <= 1e-2 for v in drawn) and len(set(drawn)) == 50
    again = [perturbed(moving, {"lr": 0.001, "layers": 4, "batch": 32}, random.Random(7))
             for _ in range(2)]
    assert again[0] == again[1]  # the same draws from the same seed


def test_a_rule_goes_over_the_wire_and_says_what_is_wrong() -> None:
    rule = PbtRule(50, 0.5, 0.1, "val_loss", "min", {"lr": GRID})
    assert sweep_rule(rule.wire()) == rule
    assert sweep_rule({"grace": 10}) == StopRule(10)  # ASHA's rule, as before
    assert rule.describe() == ("every 50 steps, the worst half by val_loss are replaced by "
                               "forks of the best half, with lr perturbed")
    for data, says in [
        ({"interval": 0}, "the interval must be 1 step or more"),
        ({"interval": 10, "quantile": 0.6}, "at most 0.5"),
        ({"interval": 10, "resample": 2}, "from 0 to 1"),
        ({"interval": 10, "axes": {"lr": ["0.1"]}}, "needs two values or more"),
        ({"interval": 10, "axes": {"lr": "big(1..2)"}}, "is not a random axis"),
        ({"interval": 10, "every": 3}, "an object of interval"),
    ]:
        with pytest.raises(ValueError, match=says):
            sweep_rule(data)


def test_a_round_once_judged_stays_judged_across_a_new_store_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite"
    store = Store(path)
    for run, value in (("a", 1.0), ("b", 2.0)):
        store.record_rung("pop", 50, run, value)
        store.record_rung("pop", 100, run, value)
    assert store.open_rounds("pop") == [50, 100]
    store.close_round("pop", 50)
    store.close()
    again = Store(path)  # a restarted daemon
    assert again.open_rounds("pop") == [100] and again.rung_values("pop", 100) == {
        "a": 1.0, "b": 2.0}
    again.close()


class _Died(BaseException):
    """The daemon's death in the middle of a round (not an error a round catches)."""


class _Judge(Population):
    """The daemon's part of PBT over a real store; its forks are rows, its kills noted,
    and it dies at its fork number ``dies_at`` (as a daemon killed mid-round)."""

    def __init__(self, store: Store, dies_at: int | None = None) -> None:
        self.store, self.live, self.fork_run = store, {}, self._fork_made
        self.dies_at, self.forks, self.killed = dies_at, list[str](), list[str]()

    def _fork_made(self, params: dict[str, Any]) -> dict[str, Any]:
        if len(self.forks) == self.dies_at:
            raise _Died
        child = f"kid{len(self.store.children(params['run']))}{params['run']}"
        _stored_run(self.store, child, params["name"], state="queued", sweep="pop",
                    parent_id=params["run"], step=60, fork_step=60)  # its checkpoint came
        self.forks.append(child)
        return {"id": child}

    def kill(self, run: dict[str, Any], grace: float) -> None:
        self.killed.append(run["id"])  # its state stays running until its process ends

    def announce(self, run_id: str) -> None:
        pass


def test_a_round_the_daemon_died_in_is_finished_by_the_next_without_replacing_twice(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "store.sqlite")
    rule = PbtRule(50, 0.5, axes={"lr": GRID})
    for n, value in enumerate((1.0, 2.0, 3.0, 4.0)):  # the worst half: run2, run3
        _stored_run(store, f"run{n}", f"pop-{n}", state="running", step=60, total_steps=200,
                    sweep="pop", config={"lr": float(GRID[n])}, early_stop=rule.wire())
        store.record_rung("pop", 50, f"run{n}", value)
    dying = _Judge(store, dies_at=1)
    with pytest.raises(_Died):  # one loser replaced, then the daemon is gone
        dying.judge_rounds("pop", rule)
    assert dying.killed == ["run3"] and len(dying.forks) == 1
    again = _Judge(store)  # the next daemon judges the round again: the loser left
    again.judge_rounds("pop", rule)
    assert again.killed == ["run2"] and len(again.forks) == 1
    assert store.open_rounds("pop") == []  # and now it is judged
    replaced = {r: store.get_run(r)["stopped_early"] for r in ("run2", "run3")}  # type: ignore[index]
    assert all(why.startswith("replaced at step 50") for why in replaced.values()), replaced
    store.close()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["seed=0,1", "--pbt", "20"], "--pbt: nothing to perturb: give the sweep an axis"),
        (["lr=0.1,0.01", "--pbt", "20", "--early-stop", "10"], "early stopping or by PBT"),
        (["lr=0.1,0.01", "--pbt-resample", "0.5"], "--pbt-quantile and --pbt-resample go "
                                                     "with --pbt INTERVAL"),
        (["lr=0.1,0.01", "--pbt", "20", "--pbt-quantile", "0.7"], "at most 0.5, not 0.7"),
        (["lr=0.1,0.01", "--pbt", "20", "--eta", "2"], "PBT's share is --pbt-quantile"),
        (["lr=0.1,0.01", "--pbt", "0"], "must be at least 1"),
    ],
)
def test_sweep_refuses_a_wrong_pbt_in_one_line(engine: Engine, argv: list[str],
                                               says: str) -> None:
    result = engine.cli("sweep", "synthetic", *argv)
    assert result.code == 2 and says in result.err and result.err.count("\n") == 1, result.err
    assert engine.cli("ls", "-q").out == ""  # nothing started


def test_a_file_gives_the_rule_and_the_sweep_its_axes(engine: Engine, tmp_path: Path) -> None:
    good = tmp_path / "pbt.toml"
    good.write_text('workload = "synthetic"\n[sweep]\nlr = "log(1e-4..1e-2)"\nseed = [0, 1]\n'
                    '[pbt]\ninterval = 40\nquantile = 0.5\n')
    assert load_experiment(str(good)).pbt == PbtRule(40, 0.5)
    result = engine.cli("sweep", "-f", str(good), "--trials", "2", "--dry-run")
    assert result.code == 0, result.err
    assert ("pbt: every 40 steps, the worst half by the training loss are replaced by forks "
            "of the best half, with lr perturbed") in result.out
    bad = tmp_path / "bad.toml"
    bad.write_text('workload = "synthetic"\n[pbt]\ninterval = 40\naxes = {lr = [1, 2]}\n')
    with pytest.raises(ExperimentError, match=r"bad\.toml: field 'pbt': its axes are the"):
        load_experiment(str(bad))


def all_ended(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every run in full, once all have ended: the forks, and forks of forks, too."""
    waited_for: set[str] = set()
    while True:
        ids = {r["id"] for r in engine.call("list_runs")["runs"]}
        if ids == waited_for:
            return {i: engine.call("get_run", run=i) for i in waited_for}
        for run_id in ids - waited_for:
            engine.wait_state(run_id, *TERMINAL, timeout=120)
        waited_for = ids


def test_a_population_replaces_its_worst_run_by_a_perturbed_fork_of_a_best(
    engine: Engine,
) -> None:
    assert engine.cli("queue", "pop", "--parallel", "4").code == 0
    # Two learning rates that learn and two that barely do, all four at once (4 slots).
    started = engine.cli("sweep", "synthetic", f"lr={','.join(GRID)}", "steps=200",
                         "sleep=0.02", "--pbt", "50", "--queue", "pop", "--name", "pop",
                         "--json")
    assert started.code == 0, started.err
    first = [run["id"] for run in started.json()]
    runs = all_ended(engine)
    children = {i: r for i, r in runs.items() if i not in first}
    db = sqlite3.connect(engine.paths.store)
    at = {step: dict(db.execute("SELECT run, value FROM rungs WHERE step = ?", (step,)))
          for step in (50, 100, 150)}
    judged = [step for (step,) in db.execute("SELECT step FROM pbt_rounds ORDER BY step")]
    db.close()
    assert judged == [50, 100, 150]
    # Round 50: the four first runs, the worst of them replaced by a fork of the best.
    assert set(at[50]) == set(first)
    worst = max(at[50], key=at[50].__getitem__)
    best = min(at[50], key=at[50].__getitem__)
    loser = runs[worst]
    assert loser["state"] == "killed" and loser["stopped_early"] == loser["exit_reason"]
    assert loser["stopped_early"].startswith(
        f"replaced at step 50: loss {at[50][worst]:.4g} is the highest of the 4 runs there; ")
    child = next(c for c in children.values() if c["id"] in loser["stopped_early"])
    assert child["parent_id"] == best and child["fork_step"] >= 50
    assert child["sweep"] == "pop" and child["name"].startswith("pop-pbt-")
    assert child["early_stop"] == runs[best]["early_stop"] == PbtRule(50, axes={"lr": GRID}).wire()
    assert child["config"]["lr"] in [float(v) for v in GRID]  # a grid axis stays on it
    assert {k: v for k, v in child["config"].items() if k != "lr"} == {
        k: v for k, v in runs[best]["config"].items() if k != "lr"}
    said = [e["reason"] for e in child["events"]]
    assert any(r.startswith(f"PBT round at step 50: forked from {best} in place of {worst}; "
                            f"lr {runs[best]['config']['lr']:.4g} → ") for r in said), said
    # It took the best run's weights: its first loss is far below the run it replaced.
    points = engine.call("metrics", run=child["id"], key="loss")["points"]
    assert points[0][0] == child["fork_step"]  # (steps count from 0: its next one)
    assert points[0][2] < at[50][worst] / 3  # [step, key, value, time]
    # Every round kept the population at four: a fork for each run replaced, one a round
    # at most (a fork made past a round's step brings no value to it).
    replaced = [r for r in runs.values() if (r["stopped_early"] or "").startswith("replaced")]
    assert len(replaced) == len(children) and 1 <= len(replaced) <= 3
    assert all(len(at[step]) <= 4 for step in (100, 150)), at
    waited = engine.cli("wait", *runs)
    assert waited.code == 0 and "(replaced at step 50:" in waited.out
    shown = engine.cli("show", child["id"]).out
    assert "pbt       every 50 steps, the worst quarter by the training loss are replaced" \
        in shown
    # A store made again from the run directories has each round's values again, and the
    # rounds judged: a daemon after it never judges a round twice.
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "rebuild").code == 0
    db = sqlite3.connect(engine.paths.store)
    again = {step: dict(db.execute("SELECT run, value FROM rungs WHERE step = ?", (step,)))
             for step in (50, 100, 150)}
    closed = [step for (step,) in db.execute("SELECT step FROM pbt_rounds ORDER BY step")]
    db.close()
    assert again[50] == at[50]
    assert closed == [50, 100, 150]


def test_a_population_replaces_a_run_whose_loss_diverges_at_once(engine: Engine) -> None:
    # Runs 'b' and 'd' log NaN at step 120, after the first round: each is replaced then,
    # by a fork of one of the best still running, as a round would replace it, instead
    # of pausing where no round would ever judge it again.
    assert engine.cli("queue", "pop", "--parallel", "4").code == 0
    started = engine.cli("sweep", "synthetic", "lr=0.03,1e-5", "nan_at=-1,120", "steps=200",
                         "sleep=0.02", "--pbt", "50", "--queue", "pop", "--name", "pop",
                         "--json")
    assert started.code == 0, started.err
    first = {run["id"]: run for run in started.json()}
    good_nan = next(i for i, r in first.items()
                    if r["config"] == {**r["config"], "lr": 0.03, "nan_at": 120})
    # 'wait --sweep' waits for the forks that join the sweep too, which no id named.
    waited = engine.cli("wait", "--sweep", "pop")
    assert waited.code == 0, waited.out + waited.err
    runs = {r["id"]: engine.call("get_run", run=r["id"])
            for r in engine.call("list_runs")["runs"]}
    assert len(runs) > len(first) and all(r["state"] in TERMINAL for r in runs.values())
    assert waited.out.count("\n") == len(runs)  # a line for each, as it ended
    # The good lr is never the worst at a round: it diverged, and was replaced for it.
    run = runs[good_nan]
    assert run["state"] == "killed" and run["diverged"] == "loss nan at step 120", run
    assert run["stopped_early"] == run["exit_reason"]
    said = run["stopped_early"]
    assert said.startswith("replaced at step ") and ": loss nan at step 120; " in said, said
    child = next(c for c in runs.values() if f"; {c['id']} (a fork of " in said)
    donor = child["parent_id"]
    assert said.endswith(f"; {child['id']} (a fork of {donor}) takes its place")
    assert donor != good_nan and child["sweep"] == "pop" and child["fork_step"] >= 50
    assert any(e["reason"].startswith(f"PBT, on divergence: forked from {donor} in place "
                                      f"of {good_nan}; ") for e in child["events"])
    assert not [r for r in runs.values() if r["state"] == "paused"]  # nothing left waiting
    unknown = engine.cli("wait", "--sweep", "nope")
    assert unknown.code == 2 and "no sweep named nope" in unknown.err
    assert len(unknown.err.splitlines()) == 1


def test_the_tui_says_replaced_without_alarm() -> None:
    reason = "replaced at step 50: loss 3 is the highest of the 4 runs there; x (a fork of y)"
    run = RunInfo(id="dddd01", name="r", state="killed", workload="synthetic", step=52,
                  condition="replaced at step 50", stopped_early=reason)
    cell = state_text(run)
    assert cell.plain.endswith("replaced") and "red" not in str(cell.style)


def test_a_fork_that_joins_a_sweep_is_named_by_its_values_under_its_parent() -> None:
    def run(run_id: str, lr: float, parent: str | None = None) -> RunInfo:
        return RunInfo(id=run_id, name=f"name-{run_id}", state="running", workload="synthetic",
                       step=0, sweep="pop", parent_id=parent, config={"lr": lr, "steps": 9})

    runs = {r.id: r for r in (run("aaaa01", 0.01), run("aaaa02", 1e-4),
                              run("aaaa03", 0.012, parent="aaaa01"))}
    groups = sweep_groups(runs)
    rows = [TreeRow(r, 1, 0, 0) for r in runs]
    names = row_names(rows, groups, runs, {})
    assert names == {"aaaa01": "lr=0.01", "aaaa02": "lr=1e-4", "aaaa03": "lr=0.012"}


def test_show_lists_each_fork_that_led_to_a_run_and_what_it_changed(engine: Engine) -> None:
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(engine.paths.store)
    base = {"lr": 0.0147, "batch": 32, "steps": 600}
    _stored_run(store, "root01", "root", config=base)
    _stored_run(store, "kid001", "kid", config={**base, "lr": 0.0176}, parent_id="root01",
                fork_step=165)
    _stored_run(store, "kid002", "grandkid", config={**base, "lr": 0.0141, "batch": 64},
                parent_id="kid001", fork_step=430)
    _stored_run(store, "kid003", "same", config={**base, "lr": 0.0141, "batch": 64},
                parent_id="kid002", fork_step=500)
    store.close()
    shown = engine.cli("show", "kid003")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("lineage"))
    assert [line.split(None, 1)[1] if n == 0 else line.strip()
            for n, line in enumerate(lines[at:at + 3])] == [
        "root01 → kid001 at step 165: lr 0.0147 → 0.0176",
        "kid001 → kid002 at step 430: lr 0.0176 → 0.0141, batch 32 → 64",
        "kid002 → kid003 at step 500: no change",
    ]
    root = engine.cli("show", "root01").out
    assert "lineage" not in root  # a run forked from nothing has none
