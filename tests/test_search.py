"""Searched sweeps (TPE): the maths on its own (it learns where the good trials were, it
never learns a seed), the command line, and a real daemon making each next trial of a
real sweep as one of its runs ends, across a kill, a crash loop, a restart and a rebuild."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import statistics
from typing import Any

import pytest

from engine.client.eta import finish_in
from engine.client.events import RunInfo
from engine.common.config import parse_literal
from engine.common.search import (
    SearchRule,
    Trial,
    draw_random,
    good_count,
    propose,
    ranked,
)
from tests.conftest import TERMINAL, Engine, wait_until

LR_AXIS = "log(1e-05..0.1)"


def _rule(**axes: Any) -> SearchRule:
    return SearchRule("tpe", 100, 10, {"steps": "50"}, axes or {"lr": LR_AXIS})


def _lr_trials(count: int, seed: int = 0) -> list[Trial]:
    """``count`` trials of lr drawn at random, scored by how far lr is from 1e-3 in
    decades (the best lr of this made-up problem)."""
    rng = random.Random(seed)
    rule = _rule()
    trials = []
    for _ in range(count):
        lr = float(draw_random(rule, rng)["lr"])
        trials.append(Trial({"lr": lr}, abs(math.log10(lr) + 3), True, 50))
    return trials


def test_tpe_proposes_where_the_good_trials_were_far_more_often_than_chance() -> None:
    rule = _rule()
    # From 30 trials (8 searches of them), 20 proposals each: how far each is from the
    # best lr, in decades, against as many drawn at random from the same range.
    medians = []
    for seed in range(8):
        trials = _lr_trials(30, seed)
        values = [float(propose(rule, trials, random.Random(i))[0]["lr"]) for i in range(20)]
        assert all(1e-5 <= v <= 0.1 for v in values)  # inside the range, always
        medians.append(statistics.median(abs(math.log10(v) + 3) for v in values))
    chance = statistics.median(
        abs(math.log10(float(draw_random(rule, random.Random(i))["lr"])) + 3)
        for i in range(160))
    assert statistics.mean(medians) < chance / 4, (medians, chance)


def test_a_choice_and_a_whole_number_are_learned_and_a_seed_never_is() -> None:
    rule = _rule(opt=["sgd", "adam", "rms"], width="int(16..512)", seed=["0", "1", "2", "3"])
    rng = random.Random(1)
    trials = []
    for _ in range(30):
        config = {k: parse_literal(v) for k, v in draw_random(rule, rng).items()}
        # adam and a width near 100 are good; the seed decides nothing, though the best
        # trials happen to have seed 0 (as a few lucky runs would).
        value = (config["opt"] != "adam") + abs(config["width"] - 100) / 400
        trials.append(Trial(config, value - 0.01 * (config["seed"] == 0), True, 50))
    proposals = [propose(rule, trials, random.Random(i))[0] for i in range(30)]
    assert sum(p["opt"] == "adam" for p in proposals) >= 20
    widths = [int(p["width"]) for p in proposals]
    assert all(16 <= w <= 512 and p["width"] == str(w)
               for w, p in zip(widths, proposals, strict=True))
    assert statistics.median(abs(w - 100) for w in widths) < 60
    assert len({p["seed"] for p in proposals}) >= 3  # drawn at random, every time


def test_axes_learned_together_keep_what_goes_together() -> None:
    # Two good places, (0.2, 0.2) and (0.8, 0.8): each axis on its own sees 0.2 and 0.8
    # as good, and may pair them across, at (0.2, 0.8) or (0.8, 0.2), where nothing is.
    rule = _rule(x="uniform(0.0..1.0)", y="uniform(0.0..1.0)")
    good, crossed = ((0.2, 0.2), (0.8, 0.8)), ((0.2, 0.8), (0.8, 0.2))
    across = {True: 0, False: 0}
    for seed in range(5):
        rng = random.Random(seed)
        trials = []
        for _ in range(200):
            config = {k: float(v) for k, v in draw_random(rule, rng).items()}
            xy = (config["x"], config["y"])
            trials.append(Trial(config, min(math.dist(xy, c) for c in good), True, 50))
        for joint in across:
            for i in range(20):
                pick = propose(rule, trials, random.Random(i), joint=joint)[0]
                xy = (float(pick["x"]), float(pick["y"]))
                across[joint] += min(math.dist(xy, c) for c in crossed) < 0.25
    assert across[True] <= 2 and across[False] >= across[True] + 10, across


def test_a_range_of_one_value_is_kept_and_the_other_axes_still_learned() -> None:
    # uniform(0.1..0.1) has nothing to learn: it once made the joint search divide by 0.
    rule = _rule(lr=LR_AXIS, wd="uniform(0.1..0.1)")
    trials = [Trial({**t.config, "wd": 0.1}, t.value, True, 50) for t in _lr_trials(30)]
    for joint in (True, False):
        picks = [propose(rule, trials, random.Random(i), joint=joint)[0] for i in range(10)]
        assert all(p["wd"] == "0.1" for p in picks)
        assert statistics.median(abs(math.log10(float(p["lr"])) + 3) for p in picks) < 0.5


def test_a_choice_is_learned_when_the_config_keeps_its_values_as_text() -> None:
    # A workload whose default is text keeps "32" as text; the axis's 32 reads as a number.
    rule = _rule(width=["16", "32", "64"])
    trials = [Trial({"width": w}, 0.1 if w == "32" else 1.0, True, 50)
              for w in ["16", "32", "64"] * 5]
    picks = [propose(rule, trials, random.Random(i))[0]["width"] for i in range(20)]
    assert picks.count("32") >= 15, picks


def test_trials_rank_complete_ones_first_then_by_how_far_the_others_got() -> None:
    trials = [Trial({"n": 1}, 0.5, True, 100), Trial({"n": 2}, 0.1, False, 60),
              Trial({"n": 3}, 0.9, True, 100), Trial({"n": 4}, 0.05, False, 30),
              Trial({"n": 5}, math.inf, False, 0), Trial({"n": 6}, 0.2, False, 60)]
    order = [t.config["n"] for t in ranked(trials, "min")]
    assert order == [1, 3, 2, 6, 4, 5]  # a diverged one (inf at step 0) last
    assert [t.config["n"] for t in ranked(trials[:3], "max")] == [3, 1, 2]
    assert [good_count(n) for n in (1, 10, 11, 100, 1000)] == [1, 1, 2, 10, 25]


def test_until_startup_trials_have_a_value_the_next_is_drawn_at_random() -> None:
    rule = SearchRule("tpe", 40, 5, {}, {"lr": LR_AXIS})
    values, how = propose(rule, _lr_trials(4), random.Random(0))
    assert how == "drawn at random (4 of the 5 trials the search starts from have a value)"
    assert values == draw_random(rule, random.Random(0))
    assert propose(rule, _lr_trials(5), random.Random(0))[1].startswith(
        "proposed by TPE from 5 ended trials (the best 1 as the good ones)")


def test_a_rule_goes_over_the_wire_and_says_what_is_wrong() -> None:
    rule = SearchRule("tpe", 30, 4, {"steps": "50"}, {"lr": LR_AXIS, "batch": ["32", "64"]},
                      "val/loss", "min", 7, "cuda")
    assert SearchRule.from_wire(rule.wire()) == rule
    assert rule.overrides({"lr": "0.001", "batch": "64"}) == ["steps=50", "lr=0.001", "batch=64"]
    for data, says in [
        ({"method": "bayes", "trials": 3, "axes": {"lr": LR_AXIS}}, "the method is tpe"),
        ({"method": "tpe", "trials": 0, "axes": {"lr": LR_AXIS}}, "--trials must be 1 or more"),
        ({"method": "tpe", "trials": 3, "axes": {"seed": ["0", "1"]}}, "nothing to search"),
        ({"method": "tpe", "trials": 3, "axes": {"lr": "log(0..1)"}}, "bounds above 0"),
        ({"method": "tpe", "trials": 3, "axes": {"b": ["32"]}}, "needs two values or more"),
        ({"method": "tpe", "trials": True, "axes": {"lr": LR_AXIS}}, "whole numbers"),
        ({"method": "tpe", "trials": 3, "axes": {"lr": 5}}, "a list of values or a random"),
        ({"method": "tpe"}, "search must be an object"),
    ]:
        with pytest.raises(ValueError, match=says):
            SearchRule.from_wire(data)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["lr=log(1e-4..1e-1)", "--search", "tpe"], "--search tpe needs --trials N"),
        (["seed=0,1", "--search", "tpe", "--trials", "4"], "nothing to search"),
        (["lr=log(1e-4..1e-1)", "--search", "tpe", "--trials", "4", "--pbt", "10"],
         "searched by TPE or made a population by PBT, not both"),
        (["lr=log(1e-4..1e-1)", "--trials", "4", "--startup", "2"],
         "--startup goes with --search tpe"),
        (["lr=log(1e-4..1e-1)", "--search", "grid", "--trials", "4"], "invalid choice"),
        (["lr=log(1e-4..1e-1)", "--search", "tpe", "--trials", "5000"],
         "this search makes 5000 runs, over the limit of 1000 (pass --yes"),
    ],
)
def test_sweep_refuses_a_wrong_search_in_one_line(engine: Engine, argv: list[str],
                                                   says: str) -> None:
    result = engine.cli("sweep", "synthetic", *argv)
    assert result.code == 2 and says in result.err and result.err.count("\n") == 1, result.err
    assert engine.cli("ls", "-q").out == ""  # nothing started


def test_a_dry_run_shows_the_first_trials_and_how_the_rest_come(engine: Engine) -> None:
    result = engine.cli("sweep", "synthetic", "lr=log(1e-4..1e-1)", "dim=8,16,32", "steps=50",
                        "--search", "tpe", "--trials", "12", "--startup", "3", "--dry-run")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["NAME", "DIM", "LR"] and len(lines) == 1 + 3 + 2
    # Named as the daemon names the trials it makes: the sweep and every axis.
    assert all(line.startswith("synthetic-dim") and "-lr" in line for line in lines[1:4])
    assert lines[4] == ("search: TPE over dim, lr: 12 trials, the first 3 at random, then "
                        "each drawn near the lowest training loss so far")
    assert lines[5] == "dry run: 3 runs would start, 9 more as they end; none started"
    assert engine.cli("ls", "-q").out == ""


def _sweep_runs(engine: Engine, sweep: str) -> list[dict[str, Any]]:
    return [engine.run(r["id"]) for r in engine.all_runs() if r["sweep"] == sweep]


def _search(engine: Engine, name: str, trials: int, startup: int,
            *config: str) -> list[dict[str, Any]]:
    """Start a search of lr for the synthetic workload; the runs it started with."""
    started = engine.cli("sweep", "synthetic", "lr=log(1e-4..1e-2)", *config, "--search",
                         "tpe", "--trials", str(trials), "--startup", str(startup),
                         "--name", name, "--json")
    assert started.code == 0, started.err
    runs: list[dict[str, Any]] = started.json()
    return runs


def _failed(engine: Engine, sweep: str, count: int) -> list[dict[str, Any]] | None:
    runs = _sweep_runs(engine, sweep)
    return runs if len(runs) == count and all(r["state"] == "failed" for r in runs) else None


def test_the_daemon_makes_each_next_trial_as_one_ends_until_the_sweep_has_them_all(
    engine: Engine,
) -> None:
    assert engine.cli("queue", "s", "--parallel", "2").code == 0
    started = engine.cli("sweep", "synthetic", "lr=log(1e-4..0.05)", "dim=8,16", "steps=60",
                         "sleep=0.01", "--search", "tpe", "--trials", "6", "--startup", "3",
                         "--queue", "s", "--name", "tpe", "--json")
    assert started.code == 0, started.err
    assert len(started.json()) == 3  # the first three, drawn at random, at once
    # 'wait --sweep' sees every trial the daemon makes before the run whose end made it
    # is told ended: it returns once all six have ended, not after the first three.
    waited = engine.cli("wait", "--sweep", "tpe")
    assert waited.code == 0, waited.out + waited.err
    runs = _sweep_runs(engine, "tpe")
    assert len(runs) == 6 and all(r["state"] in TERMINAL for r in runs)
    assert len(waited.out.splitlines()) == 6
    rule = runs[0]["search"]
    assert rule["trials"] == 6 and rule["axes"] == {"dim": ["8", "16"], "lr": "log(0.0001..0.05)"}
    assert all(r["search"] == rule for r in runs)
    made = runs[3:]
    for number, run in enumerate(made, start=4):
        first = run["events"][0]
        assert first["state"] == "queued" and first["reason"].startswith(
            f"trial {number} of 6 of sweep tpe: dim={run['config']['dim']}, lr=")
        assert run["name"].startswith(f"tpe-dim{run['config']['dim']}-lr")
        assert run["config"]["steps"] == 60 and run["queue"] == "s"
        assert 1e-4 <= run["config"]["lr"] <= 0.05 and run["config"]["dim"] in (8, 16)
    # The third took the slot the first freed; the 4th is made when the second ends (two
    # values: still at random); from the 5th on, enough have ended to learn from.
    assert "drawn at random (2 of the 3" in made[0]["events"][0]["reason"]
    assert "proposed by TPE from" in made[-1]["events"][0]["reason"]
    # Never more at once than the queue runs: each trial was made as a slot came free, so
    # none of them waited in the queue behind another of the sweep.
    assert all(r["events"][1]["state"] == "starting" for r in made)
    assert all(r["events"][1]["time"] - r["events"][0]["time"] < 2 for r in made)
    listed = engine.cli("ls", "--sweeps")
    assert "tpe 6/6" in listed.out, listed.out
    shown = engine.cli("show", made[0]["id"]).out
    assert "search    TPE over dim, lr: 6 trials, the first 3 at random" in shown
    # A store made again from the run directories has the rule on every run.
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "rebuild").code == 0
    assert [r["search"] for r in _sweep_runs(engine, "tpe")] == [rule] * 6


def test_a_killed_trial_is_not_replaced_and_a_crash_loop_stops_the_search(
    engine: Engine,
) -> None:
    first = _search(engine, "killed", 10, 2, "steps=100000", "sleep=0.01")
    for run in first:
        engine.wait_state(run["id"], "running")
    assert engine.cli("kill", "--sweep", "killed").code == 0  # each trial, as a user would
    for run in first:
        assert engine.run(run["id"])["state"] == "killed"
    assert len(_sweep_runs(engine, "killed")) == 2  # the user stopped it: nothing more
    # A script that crashes at once: three failures in a row, none finished: it stops.
    _search(engine, "crash", 10, 1, "steps=50", "fail_at=1")
    runs = wait_until(lambda: _failed(engine, "crash", 3), "three trials failed", timeout=120)
    said = [e["reason"] for e in runs[-1]["events"]]
    assert any(r.startswith("search of sweep crash: the last 3 trials failed and none has "
                            "finished: no more are made") for r in said), said
    assert len(_sweep_runs(engine, "crash")) == 3
    # 'sweep --more' goes on with both: the kills and failures before it are forgiven.
    more = engine.cli("sweep", "--more", "killed", "--trials", "1")
    assert more.code == 0, more.err
    assert more.out.startswith("sweep killed: 1 more trials, 11 in all, 2 at a time; "
                               "2 started now"), more.out
    runs = _sweep_runs(engine, "killed")
    assert len(runs) == 4 and [r["state"] for r in runs[2:]] != ["killed", "killed"]
    assert runs[3]["events"][0]["reason"].startswith("trial 4 of 11 of sweep killed: lr=")
    assert all(r["search"]["trials"] == 11 for r in runs)
    # What 'engine rebuild' would read the rule back from: the last trial before it.
    launch = json.loads(engine.paths.run_dir(runs[1]["id"]).launch.read_text())
    assert launch["search"]["trials"] == 11 and launch["search"]["since"] > 0
    assert engine.cli("sweep", "--more", "crash", "--trials", "1").code == 0
    # The script still crashes: three more failures in a row stop it again.
    runs = wait_until(lambda: _failed(engine, "crash", 6), "three more failed", timeout=120)
    wait_until(lambda: any(e["reason"].startswith("search of sweep crash: the last 3 trials")
                           for e in engine.run(runs[-1]["id"])["events"]), "it stopped again")
    assert len(_sweep_runs(engine, "crash")) == 6
    # A store made again from the run directories gives every run the newest rule.
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "rebuild").code == 0
    assert {r["search"]["trials"] for r in _sweep_runs(engine, "killed")} == {11}
    assert engine.cli("ls", "--sweeps").out.count("tpe 4/11") == 1


@pytest.mark.parametrize(
    ("argv", "says", "code"),
    [
        (["--more", "nosuch", "--trials", "2"], "no sweep named 'nosuch'", 1),
        (["--more", "grid", "--trials", "2"], "sweep 'grid' is not a search", 1),
        (["--more", "grid"], "--more needs --trials N", 2),
        (["--more", "grid", "--trials", "2", "--queue", "q", "lr=1"],
         "--more takes only --trials, --startup, --yes and --json, not --queue, a workload or "
         "axes", 2),
    ],
)
def test_more_trials_are_refused_in_one_line_for_what_is_not_a_search(
        engine: Engine, argv: list[str], says: str, code: int) -> None:
    made = engine.cli("sweep", "synthetic", "lr=1e-3,2e-3", "steps=5", "--name", "grid")
    assert made.code == 0, made.err
    result = engine.cli("sweep", *argv)
    assert result.code == code and says in result.err and result.err.count("\n") == 1, \
        result.err
    assert len(_sweep_runs(engine, "grid")) == 2


def test_a_search_whose_slots_another_sweep_took_goes_on_when_they_come_free(
    engine: Engine,
) -> None:
    assert engine.cli("queue", "shared", "--parallel", "2").code == 0
    first = _search(engine, "patient", 4, 2, "steps=100", "sleep=0.02", "--queue", "shared")
    for run in first:
        engine.wait_state(run["id"], "running")
    # A grid queued behind it takes each slot the search's runs free: the search is left
    # with none in flight, so none of its own runs' ends can make its next trial.
    grid = engine.cli("sweep", "synthetic", "lr=1e-3,2e-3,3e-3", "steps=100", "sleep=0.02",
                      "--queue", "shared", "--name", "grid", "--json")
    assert grid.code == 0, grid.err
    assert all(r["state"] == "queued" for r in grid.json())
    runs = wait_until(lambda: (lambda rs: rs if len(rs) == 4 else None)(
        _sweep_runs(engine, "patient")), "the search's last two trials", timeout=120)
    # They were made once the grid's runs had taken their turn, not before.
    grid_started = max(engine.run(r["id"])["events"][1]["time"] for r in grid.json())
    assert all(r["events"][0]["time"] >= grid_started for r in runs[2:])
    assert all(r["queue"] == "shared" for r in runs)


def _stop_and_set_rule(engine: Engine, sweep: str, changes: str) -> None:
    """Once the sweep's runs have ended, stop the engine and change its search rule in
    the store (``changes``: json_set's path, value pairs), as a daemon left it."""
    for run in _sweep_runs(engine, sweep):
        engine.wait_state(run["id"], *TERMINAL)
    assert engine.cli("engine", "stop").code == 0
    db = sqlite3.connect(engine.paths.store)
    db.execute(f"UPDATE runs SET search = json_set(search, {changes}) WHERE sweep = ?",
               (sweep,))
    db.commit()
    db.close()


def test_a_trial_that_ends_while_the_daemon_is_down_is_followed_by_the_next(
    engine: Engine,
) -> None:
    first = _search(engine, "down", 2, 1, "steps=150", "sleep=0.02")[0]["id"]
    engine.wait_step(first, 10)
    assert engine.cli("engine", "stop").code == 0  # the run trains on without it
    # The next daemon finds the run ended (its shim kept the exit) and makes trial 2.
    runs = wait_until(lambda: engine.run(first)["state"] == "finished" and (
        len(_sweep_runs(engine, "down")) == 2), "the second trial was made", timeout=60)
    assert runs
    # A daemon that died after a trial ended but before it made the next makes it when it
    # starts again: the store is left as it would be (a third trial due, none made).
    _stop_and_set_rule(engine, "down", "'$.trials', 3")
    wait_until(lambda: len(_sweep_runs(engine, "down")) == 3, "a third trial", timeout=30)
    # A trial the engine cannot make (here the workload refuses a key the rule was given)
    # is said on the last trial made; the engine goes on.
    _stop_and_set_rule(engine, "down", "'$.trials', 4, '$.fixed.nosuch', '1'")
    last = _sweep_runs(engine, "down")[-1]["id"]
    said = wait_until(lambda: [e["reason"] for e in engine.run(last)["events"]
                               if "its next trial was not made" in e["reason"]], "the note")
    assert "nosuch" in said[0] and len(_sweep_runs(engine, "down")) == 3, said


def test_a_searched_sweeps_eta_counts_the_trials_it_has_yet_to_make() -> None:
    search = SearchRule("tpe", 5, 2, {}, {"lr": LR_AXIS}).wire()

    def run(run_id: str, state: str, step: int) -> RunInfo:
        return RunInfo(id=run_id, name=run_id, workload="synthetic", state=state,
                       device="cpu", step=step, total_steps=100, sweep="s", search=search)

    runs = [run("a", "running", 50), run("b", "running", 0)]
    # Slots free at 5 s and 10 s (10 steps/s); 3 trials of 100 steps still to come.
    assert finish_in(runs, lambda r: 10.0) == pytest.approx(25.0)
    assert finish_in([*runs, run("c", "finished", 100), run("d", "killed", 3),
                      run("e", "killed", 7)], lambda r: 10.0) == pytest.approx(10.0)
