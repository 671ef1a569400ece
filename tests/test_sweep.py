"""Sweeps, experiment files, diff and wait: expansion on its own, then the CLI on a real daemon."""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from engine.client.cli.ls_corr import print_correlations
from engine.client.client import EngineError
from engine.client.events import RunInfo
from engine.client.importance import bins_of, correlations, omega_squared, ranks, spearman
from engine.client.run_select import parse_filter
from engine.common.config_diff import (
    RUNS_AS_COLUMNS,
    UNSET,
    config_diff,
    diff_table,
    runs_diff,
    value_texts,
)
from engine.common.sweep import SweepError, expand, parse_tokens, run_names
from engine.rundir.paths import RunDir
from engine.server.backends import backend_for
from engine.server.live_run import LiveRun
from engine.server.store import Store
from tests.conftest import Engine
from tests.snapshot_tests.fixed_state import EPOCH, store_run
from tests.test_cli_errors import refused

STEPS = "steps=5"


def draws(tokens: list[str], trials: int, seed: int) -> list[list[str]]:
    return expand(parse_tokens(tokens), trials, seed)


def test_grid_is_crossed_first_axis_slowest_with_fixed_values_first() -> None:
    runs = expand(parse_tokens(["lr=1e-4,3e-4,1e-3", "batch=32,64", "steps=10"]))
    assert runs == [
        ["steps=10", f"lr={lr}", f"batch={batch}"]
        for lr in ("1e-4", "3e-4", "1e-3")
        for batch in (32, 64)
    ]


def test_random_axes_are_reproducible_by_seed_and_stay_in_bounds() -> None:
    tokens = ["lr=log(1e-4..1e-2)", "dropout=uniform(0..0.3)", "layers=int(2..3)"]
    runs = draws(tokens, 40, seed=7)
    assert runs == draws(tokens, 40, seed=7)
    assert runs != draws(tokens, 40, seed=8)
    values = [dict(o.split("=") for o in run) for run in runs]
    assert all(1e-4 <= float(v["lr"]) <= 1e-2 for v in values)
    assert all(0 <= float(v["dropout"]) <= 0.3 for v in values)
    assert {v["layers"] for v in values} == {"2", "3"}  # both ends included
    # log-uniform: about as many draws below 1e-3 (the log midpoint) as above it.
    assert 8 <= sum(float(v["lr"]) < 1e-3 for v in values) <= 32


def test_each_trial_is_crossed_with_the_whole_grid() -> None:
    runs = draws(["batch=32,64", "lr=log(1e-4..1e-2)"], 3, seed=0)
    assert len(runs) == 6
    assert [r[0] for r in runs] == ["batch=32", "batch=64"] * 3
    lrs = [r[1] for r in runs]
    assert lrs[0] == lrs[1] and lrs[2] == lrs[3] and lrs[4] == lrs[5]
    assert len(set(lrs)) == 3


def test_names_show_the_values_that_differ_and_are_unique() -> None:
    # (a sweep refuses 8 and 8.0 in one list; runs made apart may still have both)
    runs = [[f"lr={lr}", "batch=64", f"dim={dim}"] for lr in ("3e-4", "1e-3")
            for dim in ("8", "8.0")]
    taken = {"charlm-lr3e-4-dim8"}
    names = run_names("charlm", runs, taken.__contains__)
    # 8 and 8.0 differ as text but read the same in a name: a number keeps them apart.
    assert names == [
        "charlm-lr3e-4-dim8-2",  # the bare name was taken already
        "charlm-lr3e-4-dim8-3",
        "charlm-lr1e-3-dim8",
        "charlm-lr1e-3-dim8-2",
    ]
    same = run_names("x", [["lr=0.00011"], ["lr=0.000110001"]], lambda n: False)
    assert same == ["x-lr1.1e-4", "x-lr1.1e-4-2"]


@pytest.mark.parametrize(
    ("tokens", "trials", "mentions"),
    [
        (["lr=1e-4,"], None, "lr=1e-4,"),
        (["lr=uniform(1..0.5)"], 2, "uniform(1..0.5)"),
        (["lr=log(0..1)"], 2, "log(0..1)"),
        (["lr=log(1e-4..1e-2)"], None, "--trials"),
        (["lr=1,2"], 3, "--trials 3"),
        (["lr=1,2", "lr=3"], None, "lr=3"),
        (["layers=int(2..x)"], 2, "int(2..x)"),
        (["fail_at=5,-1,-1"], None, "fail_at=5,-1,-1: -1 given twice; each value makes a run"),
        (["lr=1e-3,0.001"], None, "1e-3 and 0.001 given twice"),
    ],
)
def test_bad_specs_name_the_token(tokens: list[str], trials: int | None, mentions: str) -> None:
    with pytest.raises(SweepError) as caught:
        expand(parse_tokens(tokens), trials)
    assert mentions in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_sweep_over_the_cap_needs_yes() -> None:
    spec = parse_tokens(["a=" + ",".join(map(str, range(40))),
                         "b=" + ",".join(f"x{n}" for n in range(30))])
    with pytest.raises(SweepError, match="1200 runs"):
        expand(spec)
    assert len(expand(spec, allow_many=True)) == 1200


def test_config_diff_lists_only_keys_that_differ() -> None:
    diff = config_diff([{"lr": 1, "seed": 0, "x": float("nan")}, {"lr": 1.0, "seed": 1,
                        "x": float("nan"), "extra": True}])
    assert diff == {"seed": [0, 1], "extra": [UNSET, True]}


@pytest.mark.parametrize(
    ("argv", "code", "mentions"),
    [
        (["sweep", "synthetic", "lr=0.1,"], 2, "lr=0.1,"),
        (["sweep", "synthetic", "lr=uniform(1..0)", "--trials", "2"], 2, "uniform(1..0)"),
        (["sweep", "synthetic", "lr=log(-1..1)", "--trials", "2"], 2, "log(-1..1)"),
        (["sweep", "synthetic", "lr=log(1e-3..1e-2)"], 2, "--trials"),
        (["sweep", "synthetic", "lr=0.1,0.2", "--trials", "2"], 2, "no random axis"),
        (["sweep", "synthetic", "lr=loguniform(1e-3,1e-1)", "--trials", "2"], 2,
         "loguniform() is not a random axis here; write lr=log(LO..HI)"),
        (["sweep", "synthetic", "seed=" + ",".join(map(str, range(1001)))], 2, "--yes"),
        (["sweep", "synthetic", "lr=0.1,abc"], 1, "lr=abc"),
        (["sweep", "synthetic", "nosuch=1,2"], 1, "nosuch"),
        (["sweep", "synthetic", "lr=0.1,0.2", "--queue", "two words"], 1, "queue name"),
        (["sweep", "synthetic", "lr=0.1,0.2", "--name", "two words"], 2, "one word"),
        (["sweep", "nosuchworkload", "lr=0.1,0.2"], 1, "nosuchworkload"),
        (["sweep"], 2, "no workload"),
    ],
)
def test_bad_sweeps_are_one_line_and_start_nothing(
    engine: Engine, argv: list[str], code: int, mentions: str
) -> None:
    refused(engine, *argv, code=code, mentions=mentions)


def test_dry_run_shows_the_runs_and_starts_none(engine: Engine) -> None:
    result = engine.cli("sweep", "synthetic", "lr=0.01,0.02", "batch=8,16", STEPS, "--dry-run")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0].split() == ["NAME", "LR", "BATCH"]
    assert lines[1].split() == ["synthetic-lr0.01-batch8", "0.01", "8"]
    assert lines[4].split() == ["synthetic-lr0.02-batch16", "0.02", "16"]
    as_json = engine.cli("sweep", "synthetic", "lr=0.01,0.02", "--dry-run", "--json").json()
    assert as_json == [
        {"name": "synthetic-lr0.01", "overrides": ["lr=0.01"]},
        {"name": "synthetic-lr0.02", "overrides": ["lr=0.02"]},
    ]
    assert engine.all_runs() == []
    # A drawn value is shown as the run's name shows it; --json keeps every digit.
    drawn = engine.cli("sweep", "synthetic", "lr=log(1e-4..1e-2)", "--trials", "2", "--dry-run")
    exact = engine.cli("sweep", "synthetic", "lr=log(1e-4..1e-2)", "--trials", "2", "--dry-run",
                       "--json").json()
    for line, plan in zip(drawn.out.splitlines()[1:3], exact, strict=True):
        name, value = line.split()
        assert name == plan["name"] and name.endswith(f"-lr{value}") and len(value) <= 7
        assert abs(float(value) / float(plan["overrides"][0].split("=")[1]) - 1) < 5e-3


def test_a_sweep_made_again_without_a_seed_draws_new_values(engine: Engine) -> None:
    words = ["sweep", "synthetic", "lr=log(1e-4..1e-1)", "dim=8,16", STEPS, "--trials", "3"]
    first = engine.cli(*words, "--name", "a", "--json")
    assert first.code == 0 and first.err == "", first.err
    # The same sweep again: seed 0's draws exist, so seed 1's are taken, and said.
    plan = engine.cli(*words, "--name", "b", "--dry-run", "--json")
    again = engine.cli(*words, "--name", "b", "--json")
    said = "seed 1: seed 0's draws were run before (--seed 1 draws these again)\n"
    assert plan.err == said and again.err == said
    assert [r["name"] for r in plan.json()] == [r["name"] for r in again.json()]
    lrs = {r["config"]["lr"] for r in (engine.run(x["id"]) for x in first.json())}
    new = {r["config"]["lr"] for r in (engine.run(x["id"]) for x in again.json())}
    assert len(lrs) == 3 and len(new) == 3 and not lrs & new
    same = engine.cli(*words, "--name", "c", "--seed", "1", "--dry-run", "--json")
    overrides = [r["overrides"] for r in plan.json()]
    assert same.err == "" and [r["overrides"] for r in same.json()] == overrides  # drawn again
    # A search starts from new draws the same way (its first lr is seed N's first, as a
    # sweep's: seeds 0 and 1 are taken); a grid has nothing drawn to avoid.
    search = engine.cli("sweep", "synthetic", "lr=log(1e-4..1e-1)", STEPS, "--search", "tpe",
                        "--trials", "3", "--dry-run")
    assert search.err.startswith("seed 2: the draws of seeds 0 to 1 were run before"), search.err
    grid = engine.cli("sweep", "synthetic", "lr=0.01,0.02", STEPS, "--dry-run")
    assert grid.code == 0 and grid.err == ""


def test_a_2x2_sweep_starts_four_runs_with_their_configs_and_names(engine: Engine) -> None:
    result = engine.cli("sweep", "synthetic", "lr=0.01,0.02", "batch=8,16", STEPS, "--json")
    assert result.code == 0, result
    started = result.json()
    runs = {r["name"]: r for r in engine.all_runs()}
    assert [r["name"] for r in started] == list(runs)
    expected = {
        f"synthetic-lr{lr}-batch{batch}": (lr, batch)
        for lr in (0.01, 0.02)
        for batch in (8, 16)
    }
    assert list(runs) == list(expected)
    for name, (lr, batch) in expected.items():
        config = runs[name]["config"]
        assert (config["lr"], config["batch"], config["steps"]) == (lr, batch, 5)
    again = engine.cli("sweep", "synthetic", "lr=0.01,0.02", STEPS)
    assert again.code == 0, again
    assert "synthetic-lr0.01 " in again.out and "synthetic-lr0.02 " in again.out
    assert len(engine.all_runs()) == 6


def test_a_start_refused_halfway_says_what_started(engine: Engine) -> None:
    result = engine.cli("sweep", "synthetic", "steps=5,0")
    assert result.code == 1
    [line] = result.err.strip().splitlines()
    assert "run 2 of 2 (synthetic-steps0) was refused" in line
    assert "not started: synthetic-steps0" in line
    assert [r["name"] for r in engine.all_runs()] == ["synthetic-steps5"]
    assert "synthetic-steps5" in result.out


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return str(path)


def test_an_experiment_file_starts_a_run_or_a_sweep(engine: Engine, tmp_path: Path) -> None:
    one = write(tmp_path, 'workload = "synthetic"\nname = "base"\ntags = ["exp", "v1"]\n'
                '[config]\nsteps = 5\nlr = 0.03\n')
    result = engine.cli("start", "-f", one, "lr=0.04", "--no-wait")
    assert result.code == 0, result
    assert engine.run("base")["config"]["lr"] == 0.04  # the command line wins
    assert engine.run("base")["config"]["steps"] == 5
    assert engine.run("base")["tags"] == ["exp", "v1"]
    sweep = write(
        tmp_path,
        'workload = "synthetic"\nname = "exp"\ntrials = 2\nseed = 3\ntags = ["grid"]\n'
        '[config]\nsteps = 5\n[sweep]\nbatch = [8, 16]\nlr = "log(1e-3..1e-1)"\n',
    )
    result = engine.cli("start", "-f", sweep, "--json", "--tag", "mine")
    assert result.code == 0, result
    runs = result.json()
    assert [r["config"]["batch"] for r in runs] == [8, 16, 8, 16]
    assert all(r["tags"] == ["mine"] for r in runs)  # the command line's tags win
    assert all(r["name"].startswith("exp-batch") for r in runs)
    plan = engine.cli("sweep", "-f", sweep, "--dry-run", "--json", "--seed", "3").json()
    assert [p["name"] for p in plan] == [f"{r['name']}-2" for r in runs]  # same draws, again
    fixed = engine.cli("sweep", "-f", sweep, "--dry-run", "--json", "--trials", "1", "batch=4")
    [first] = fixed.json()  # one trial, and batch fixed by the command line: one run
    assert first["overrides"][:2] == ["steps=5", "batch=4"]


def test_start_f_takes_steps_and_its_queue(engine: Engine, tmp_path: Path) -> None:
    sweep = write(tmp_path, 'workload = "synthetic"\n[sweep]\nlr = [0.01, 0.02]\n')
    result = engine.cli("start", "-f", sweep, "--steps", "7", "--json")
    assert result.code == 0, result
    assert [r["config"]["steps"] for r in result.json()] == [7, 7]
    for run in result.json():
        engine.wait_state(run["id"], "finished")  # refused() below compares stored states
    queued = write(tmp_path, 'workload = "synthetic"\nqueue = "night"\n')
    result = engine.cli("start", "-f", queued, "--no-wait", "--json")
    assert result.code == 0 and result.json()["queue"] == "night"


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ('workload = "synthetic"\nstep = 5\n', "unknown field 'step'"),
        ('workload = "synthetic"\ntrials = "3"\n', "'trials' must be an integer"),
        ('workload = "synthetic"\nconfig = 5\n', "'config' must be a table"),
        ('workload = "synthetic"\n[sweep]\nlr = []\n', "sweep.lr: an empty list"),
        ('workload = "synthetic"\n[sweep]\nlr = "fast"\n', "sweep.lr: expected a list"),
        ('workload = "synthetic"\n[sweep]\nlr = "log(0..1)"\n', "sweep.lr"),
        ('workload = "synthetic\n', "not valid TOML"),
        ('name = "x"\n', "no workload"),
        ('workload = "synthetic"\ntags = "a"\n', "'tags' must be a list of words"),
        ('workload = "synthetic"\ntags = ["a b"]\n', "field 'tags': invalid tag 'a b'"),
    ],
)
def test_bad_experiment_files_are_one_line(
    engine: Engine, tmp_path: Path, text: str, mentions: str
) -> None:
    path = write(tmp_path, text)
    refused(engine, "start", "-f", path, code=2, mentions=mentions)
    refused(engine, "sweep", "-f", path, code=2, mentions=mentions)


def test_diff_prints_only_the_keys_that_differ(engine: Engine) -> None:
    for name, lr in (("a", "0.01"), ("b", "0.02"), ("c", "0.01")):
        engine.call("start", workload="synthetic", name=name, overrides=[STEPS, f"lr={lr}"])
        engine.wait_state(name, "finished")  # refused() below compares stored states
    result = engine.cli("diff", "a", "b")
    assert result.code == 0, result
    header, *rows = result.out.splitlines()
    assert "(a)" in header and "(b)" in header
    a, b = engine.run("a"), engine.run("b")
    # The keys that differ, a blank row, then where each run stands, to six digits.
    assert [row.split() for row in rows] == [
        ["lr", "0.01", "0.02"],
        [],
        ["state", "finished", "finished"],
        ["step", str(a["step"]), str(b["step"])],
        ["best", "loss", f"{a['best']['loss']:.6g}", f"{b['best']['loss']:.6g}"],
        ["last", "loss", f"{a['last']['loss']:.6g}", f"{b['last']['loss']:.6g}"],
    ]
    assert a["best"]["loss"] == min(engine.losses("a").values())
    same = engine.cli("diff", "a", "c").out.splitlines()
    assert same[0] == "no config differences" and same[2].split()[0] == "state"
    as_json = engine.cli("diff", "a", "b", "c", "--json").json()
    ids = as_json["runs"]
    assert as_json["differences"] == {"lr": dict(zip(ids, [0.01, 0.02, 0.01], strict=True))}
    assert as_json["outcomes"]["best loss"][ids[1]] == b["best"]["loss"]
    refused(engine, "diff", "a", code=2, mentions="two runs")
    refused(engine, "diff", "a", "nosuch", code=1, mentions="nosuch")


def test_wait_exits_0_when_all_finish_and_1_when_one_is_killed(engine: Engine) -> None:
    for name in ("w1", "w2"):
        engine.call("start", workload="synthetic", name=name, overrides=["steps=20"])
    done = engine.cli("wait", "w1", "w2")
    assert done.code == 0, done
    assert sorted(line.split()[1] for line in done.out.splitlines()) == ["(w1)", "(w2)"]
    assert all(" finished " in line for line in done.out.splitlines())

    engine.call("start", workload="synthetic", name="long", overrides=["steps=100000"])
    engine.wait_state("long", "running")
    timed_out = engine.cli("wait", "long", "--timeout", "0.5")
    assert timed_out.code == 2
    assert "still going: " in timed_out.err and "(long)" in timed_out.err
    engine.call("kill", run="long", grace=5)
    killed = engine.cli("wait", "w1", "long")
    assert killed.code == 1, killed
    assert "(long) killed" in killed.out
    long_id = engine.run("long")["id"]
    assert killed.err == f"traintop: 1 of 2 runs did not finish: 1 killed ({long_id})\n"
    # A run that waits in a held queue will not start: said once, while waiting on it.
    assert engine.cli("queue", "held", "--pause").code == 0
    engine.call("start", workload="synthetic", name="later", overrides=["steps=5"],
                queue="held")
    stuck = engine.cli("wait", "later", "--timeout", "1")
    assert stuck.code == 2 and stuck.err.startswith(
        "traintop: waiting on runs queued in held, which is paused: 'traintop queue held "
        "--resume' lets them start\n"), stuck.err


def test_wait_on_an_unknown_run_is_one_line(engine: Engine) -> None:
    engine.call("start", workload="synthetic", name="known", overrides=[STEPS])
    engine.wait_state("known", "finished")  # refused() compares stored states
    refused(engine, "wait", "known", "nosuch", code=2, mentions="nosuch")


def test_a_sweep_is_killed_and_removed_by_its_name(engine: Engine) -> None:
    # A grid of four in a queue of two: two train, two wait; one kill stops all four.
    assert engine.cli("queue", "two", "--parallel", "2").code == 0
    made = engine.cli("sweep", "synthetic", "lr=1e-3,2e-3,3e-3,4e-3", "steps=100000",
                      "sleep=0.01", "--queue", "two", "--name", "grid", "--json")
    ids = {run["id"] for run in made.json()}
    engine.call("start", workload="synthetic", name="apart", overrides=["steps=100000"])
    removing = engine.cli("rm", "--sweep", "grid")  # nothing of it has ended yet
    assert removing.code == 1 and removing.out == "no run of sweep grid is left to remove\n"
    assert removing.err == ("traintop: 4 runs of sweep grid not ended, not removed: kill "
                            "them first, or give -f\n")
    # Pause and resume take its training runs; the two queued ones wait on.
    first = [run["id"] for run in made.json()[:2]]
    for run_id in first:
        engine.wait_step(run_id, 1)
    paused = engine.cli("pause", "--sweep", "grid")
    assert paused.code == 0 and sorted(line.split()[1] for line in paused.out.splitlines()) \
        == sorted(first), paused
    assert [engine.run(r)["state"] for r in ids - set(first)] == ["queued", "queued"]
    resumed = engine.cli("resume", "--sweep", "grid")
    assert resumed.code == 0 and resumed.out.count("resumed ") == 2, resumed
    # Released, their slots go to the sweep's queued runs: said, with how to hold them.
    released = engine.cli("pause", "--sweep", "grid", "--release", "--timeout", "30")
    assert released.code == 0 and released.out.count("(memory released)") == 2, released
    assert released.err == ("traintop: 2 queued runs of the sweep may take the slots freed "
                            "('traintop queue two --pause' holds them)\n")
    killed = engine.cli("kill", "--sweep", "grid", "--grace", "5")
    assert killed.code == 0, killed
    assert {line.split()[1] for line in killed.out.splitlines()} == ids
    assert {engine.run(run_id)["state"] for run_id in ids} == {"killed"}
    assert engine.run("apart")["state"] == "running"  # not of the sweep: untouched
    again = engine.cli("kill", "--sweep", "grid")
    assert again.code == 0 and again.out == "no run of sweep grid is left to kill\n"
    typo = engine.cli("kill", "--sweep", "gird")
    assert typo.code == 1 and typo.err == "traintop: no sweep named gird (did you mean 'grid'?)\n"
    # diff and export take a sweep by its name too: every run of it, in the order made.
    diffed = engine.cli("diff", "--sweep", "grid", "--json").json()
    assert diffed["runs"] == [run["id"] for run in made.json()]
    assert set(diffed["differences"]) == {"lr"}
    exported = engine.cli("export", "--sweep", "grid", "--format", "jsonl").out.splitlines()
    assert [json.loads(line)["run"]["id"] for line in exported] == diffed["runs"]
    alone = engine.cli("diff", "apart")
    assert alone.code == 2 and "diff needs two runs or more" in alone.err
    removed = engine.cli("rm", "--sweep", "grid")
    assert removed.code == 0 and removed.out.endswith("removed 4 runs: " + removed.out.rsplit(
        ": ", 1)[1]), removed.out
    assert [run["name"] for run in engine.all_runs()] == ["apart"]
    bare = engine.cli("kill")
    assert bare.code == 2 and "kill needs runs or --sweep NAME" in bare.err


def test_ls_sweeps_lists_each_sweep_with_its_states_best_run_and_rule(engine: Engine) -> None:
    assert engine.cli("queue", "q", "--parallel", "4").code == 0
    plain = engine.cli("sweep", "synthetic", "lr=0.02,1e-6", "steps=30", "--name", "grid",
                       "--queue", "q", "--json").json()
    ruled = engine.cli("sweep", "synthetic", "lr=0.01,0.02", "steps=30", "--name", "asha",
                       "--early-stop", "10", "--queue", "q", "--json").json()
    alone = engine.cli("start", "synthetic", "steps=10", "--json").json()["id"]
    everything = [r["id"] for r in (*plain, *ruled)] + [alone]
    assert engine.cli("wait", *everything).code == 0
    runs = {r["id"]: r for r in engine.cli("ls", "--json").json()}
    grid_best = min((r for r in runs.values() if r["sweep"] == "grid"),
                    key=lambda r: r["best"]["loss"])
    assert grid_best["config"]["lr"] == 0.02  # 1e-6 barely learns

    listed = engine.cli("ls", "--sweeps")
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert lines[0].split()[:4] == ["SWEEP", "RUNS", "STATES", "BEST"]
    grid = next(line for line in lines if line.startswith("grid "))
    assert " 2 " in grid and "2 finished" in grid and f"{grid_best['id']} " in grid
    assert "asha 10" in next(line for line in lines if line.startswith("asha "))
    assert lines[-1].startswith("(2 sweeps of 4 runs; 1 run in no sweep;")
    cut = engine.cli("ls", "--sweeps", "-n", "1").out.splitlines()[-1]
    assert cut.startswith("(1 sweep (of 2) of 2 runs; 1 run in no sweep;"), cut
    # The lowest best loss first; only the sweeps that still hold a run of a state asked.
    best = engine.cli("ls", "--sweeps", "--sort", "best", "-q").out.split()
    bests = {s: min(r["best"]["loss"] for r in runs.values() if r["sweep"] == s)
             for s in ("grid", "asha")}
    assert best == sorted(bests, key=bests.__getitem__)
    assert engine.cli("ls", "--sweeps", "--state", "live", "-q").out == ""
    wire = {s["sweep"]: s for s in engine.cli("ls", "--sweeps", "--json").json()}
    assert wire["grid"]["runs"] == [r["id"] for r in plain]
    assert wire["grid"]["best"]["id"] == grid_best["id"]
    assert wire["asha"]["early_stop"]["grace"] == 10 and wire["grid"]["early_stop"] is None
    refused(engine, "ls", "--sweeps", "--sort", "step",
            mentions="--sweeps sorts by created, name, runs, best")
    refused(engine, "ls", "--sweeps", "-G", mentions="--sweeps lists sweeps: not with -G")
    refused(engine, "show", "grid", mentions="no run matches 'grid'; 'grid' is a sweep of 2 "
            "runs: 'traintop ls --sweep grid -q' gives their ids")


def test_more_runs_than_fit_side_by_side_are_diffed_a_row_each() -> None:
    runs = [{"id": f"r{i}", "name": f"lr-{i}", "workload": "synthetic",
             "config": {"lr": 10.0 ** -i, "batch": 32}, "state": "finished", "step": 100,
             "last": {"loss": 0.5 / (i + 1)}, "best": {"loss": 0.4 / (i + 1)}}
            for i in range(RUNS_AS_COLUMNS + 1)]
    header, rows = diff_table(runs, runs_diff(runs))
    assert header == ["RUN", "lr", "state", "step", "best loss", "last loss"]
    assert [row[:2] for row in rows] == [[f"r{i} lr-{i}", repr(10.0 ** -i)]
                                         for i in range(len(runs))]
    assert rows[2][4] == f"{0.4 / 3:.6g}"
    # A drawn value in as few digits as keep the runs' values apart, four at least.
    assert value_texts([0.03414016019207298, 0.0005980675662697353, 2.0, 2, "x"]) == [
        "0.03414", "0.0005981", "2.0", "2", "x"]
    assert value_texts([0.1, 0.1000001, 0.10000011]) == ["0.1", "0.1000001", "0.10000011"]
    side_by_side, _ = diff_table(runs[:RUNS_AS_COLUMNS], runs_diff(runs[:RUNS_AS_COLUMNS]))
    assert side_by_side[0] == "KEY" and len(side_by_side) == RUNS_AS_COLUMNS + 1


def test_ranks_share_ties_and_spearman_reads_only_the_order() -> None:
    assert ranks([10.0, 30.0, 20.0, 20.0]) == [1.0, 4.0, 2.5, 2.5]
    assert spearman([1, 2, 3, 4], [0.9, 0.5, 0.2, 0.1]) == -1.0  # any falling curve
    assert spearman([1e-4, 1e-3, 1e-2], [1.0, 8.0, 9.0]) == 1.0
    assert spearman([1, 1, 1], [3.0, 2.0, 1.0]) is None  # a setting that never moves
    assert abs(spearman([1, 2, 3, 4, 5], [2.0, 1.0, 4.0, 3.0, 5.0]) or 0) < 1


def test_ls_corr_says_which_settings_go_with_a_lower_loss(engine: Engine) -> None:
    started = engine.cli("sweep", "synthetic", "lr=1e-6,1e-4,0.02", "seed=0,1", "steps=30",
                         "--name", "c", "--json")
    assert started.code == 0, started.err
    assert engine.cli("wait", "--sweep", "c").code == 0
    lines = engine.cli("ls", "--sweep", "c", "--corr").out.splitlines()
    assert lines[0].split()[:5] == ["KEY", "RUNS", "IMPORTANCE", "BEST", "BIN"]
    key, runs, importance, best_bin, rho = lines[1].split()[:5]
    assert (key, runs) == ("lr", "6") and float(rho) < -0.7  # a higher lr learned faster
    assert float(importance) > 0.5 and best_bin == "0.02"
    assert not any(line.startswith("seed") for line in lines)  # seeds are what they average
    [wire] = engine.cli("ls", "--sweep", "c", "--corr", "--json").json()
    assert wire["key"] == "lr" and wire["best_runs"] == 0.02 and wire["best_bin"] == [0.02, 0.02]
    refused(engine, "ls", "--corr", "-G", mentions="--corr correlates the runs listed")
    # Runs of another workload beside them: their losses do not compare with these.
    assert engine.cli("queue", "held", "--pause").code == 0
    engine.call("start", workload="charlm", overrides=["steps=2"], queue="held")
    line = refused(engine, "ls", "--corr")
    assert line == ("traintop: --corr compares runs of one workload, whose losses compare; "
                    "these are of synthetic (6), charlm (1): narrow them with --sweep NAME "
                    "or a filter (traintop ls --corr workload=synthetic)")
    assert engine.cli("ls", "--corr", "workload=synthetic").out.splitlines()[1:2] == lines[1:2]


def test_the_corr_hint_names_a_filter_that_keeps_a_commands_runs() -> None:
    """An attached script's workload is its command line, spaces and all: the filter the
    refusal suggests must keep its runs (it kept none)."""
    command = "attach:/usr/bin/python3 train.py --lr 0.1"
    runs = [RunInfo.from_wire({"id": f"r{n}", "name": f"r{n}", "state": "finished",
                               "workload": workload, "step": 9, "config": {"lr": n}})
            for n, workload in enumerate([command, command, "synthetic"])]
    with pytest.raises(EngineError) as refusal:
        print_correlations(runs, argparse.Namespace(json=False))
    hint = refusal.value.message.rpartition("(traintop ls --corr ")[2].rstrip(")")
    [word] = shlex.split(hint)
    assert word == "workload=attach:/usr/bin/python3*train.py*--lr*0.1"
    assert [r.id for r in runs if parse_filter(word).matches(r)] == ["r0", "r1"]


def _scored(losses_by_config: list[tuple[dict[str, float], float]]) -> list[RunInfo]:
    return [RunInfo.from_wire({"id": f"r{n}", "name": f"r{n}", "state": "finished",
                               "workload": "synthetic", "step": 9, "config": config,
                               "best": {"loss": loss}})
            for n, (config, loss) in enumerate(losses_by_config)]


def test_importance_finds_a_setting_best_in_the_middle_that_spearman_misses() -> None:
    # lr on a log grid, best at 1e-3 and worse either side (a U); 'junk' says nothing
    lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    runs = _scored([({"lr": lr, "junk": float(n // 5)},  # each junk value: every lr
                     abs(math.log10(lr) + 3) + 0.01 * (n % 3))
                    for n, lr in enumerate(lrs * 4)])
    lr, junk = correlations(runs)  # the most important first
    assert lr.key == "lr" and abs(lr.rho) < 0.2  # no order: Spearman sees nothing
    assert lr.importance is not None and lr.importance > 0.8
    assert lr.best_bin == (1e-3, 1e-3) and lr.bin_text == "0.001"
    assert junk.key == "junk" and junk.importance == 0.0


def test_many_values_go_in_five_bins_of_about_equal_counts_ties_kept_whole() -> None:
    xs = [float(x) for x in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]
    assert [[xs[i] for i in b] for b in bins_of(xs)] == [
        [1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14, 15]]
    xs = [float(x) for x in [7, 1, 2, 3, 4, 5, 5, 5, 5, 6]]  # the 5s would straddle two
    bins = bins_of(xs)
    assert [sorted(xs[i] for i in b) for b in bins] == [[1, 2], [3, 4], [5, 5, 5, 5], [6, 7]]
    assert sorted(i for b in bins for i in b) == list(range(len(xs)))
    assert all(max(xs[i] for i in a) < min(xs[i] for i in b) for a, b in pairwise(bins))
    assert bins_of([3.0, 1.0, 3.0]) == [[1], [0, 2]]  # few values: a bin each
    assert omega_squared([[0, 1, 2]], [1.0, 2.0, 3.0]) is None  # one bin: nothing to say


def store_coarse_sweep(engine: Engine, sweep: str | None = None) -> None:
    """30 finished runs, stored before the daemon starts: lr log-spread from 1e-4 to
    0.1, best near 3e-3 (a U); dim whole numbers, the wider the better."""
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(engine.paths.store)
    for n in range(30):
        lr, dim = 10 ** (-4 + 3 * n / 29), 8 + (n * 7) % 57
        loss = abs(math.log10(lr) + 2.5) + 16 / dim
        store_run(store, {"id": f"cl{n:04d}", "name": f"r{n}", "workload": "synthetic",
                          "config": {"lr": lr, "dim": dim, "steps": 10},
                          "total_steps": 10, "created": EPOCH + n, "sweep": sweep},
                  [[0, "loss", loss, EPOCH + n]], ("finished", "finished", 0))
    store.close()


def test_ls_corr_ends_with_a_closer_look_that_sweep_takes(engine: Engine) -> None:
    store_coarse_sweep(engine)
    lines = engine.cli("ls", "--corr").out.splitlines()
    said = lines[-1]
    assert said.startswith("(a closer look: traintop sweep --like ") and said.endswith(")")
    words = shlex.split(said.removeprefix("(a closer look: traintop sweep ").removesuffix(")"))
    best = engine.cli("ls", "--sort", "best", "-n", "1", "-q").out.strip()
    assert words[:2] == ["--like", best] and words[-2:] == ["--trials", "20"]
    lr_bin, dim_bin = (next(line.split()[3] for line in lines if line.startswith(key))
                       for key in ("lr ", "dim "))
    assert f"lr=log({lr_bin})" in words and f"dim=int({dim_bin})" in words
    plan = engine.cli("sweep", *words, "--dry-run", "--json")  # what it would start
    assert plan.code == 0, plan.err
    low, high = (float(end) for end in lr_bin.split(".."))
    for run in plan.json():
        values = dict(o.split("=", 1) for o in run["overrides"])
        assert low <= float(values["lr"]) <= high
        assert float(values["dim"]) == int(values["dim"])
    assert len(plan.json()) == 20


def test_ls_says_when_running_runs_and_sweeps_will_be_done(engine: Engine) -> None:
    # One slot: the first run trains (about 100 steps a second), the second waits for it.
    assert engine.cli("queue", "one", "--parallel", "1").code == 0
    ids = [r["id"] for r in engine.cli(
        "sweep", "synthetic", "lr=1e-3,3e-3", "steps=100000", "sleep=0.01", "--name", "slow",
        "--queue", "one", "--json").json()]
    try:
        def listed() -> dict[str, dict[str, Any]]:
            return {r["id"]: r for r in engine.cli("ls", "--json").json()}

        runs = engine.wait(ids[0], lambda r: listed()[ids[0]]["rate"] is not None)
        runs = listed()
        rate = runs[ids[0]]["rate"]
        assert rate > 0 and runs[ids[1]]["rate"] is None  # the daemon's pace of the live one
        lines = engine.cli("ls").out.splitlines()
        at = lines[0].index(" ETA ") + 1  # (a queued run's STATE has spaces in it)
        running, waiting = (next(line[at:].split()[0] for line in lines if line.startswith(i))
                            for i in ids)
        assert re.fullmatch(r"\d+h\d\dm|\d+m\d\ds|\d+s", running), lines
        assert waiting == "-"  # it waits: its time is the sweep's
        [sweep] = engine.cli("ls", "--sweeps", "--json").json()
        left = sweep["seconds_left"]
        alone = (100000 - runs[ids[0]]["step"]) / rate
        # the second starts when the first ends and takes as long as a whole run: about
        # twice the first's time left (the rates move between two listings, under load)
        assert 1.3 * alone < left < 4 * alone
        header, row = engine.cli("ls", "--sweeps").out.splitlines()[:2]
        at = header.index(" ETA ") + 1  # ('BEST RUN' is a column too)
        assert re.fullmatch(r"\d+h\d\dm|\d+m\d\ds", row[at:].split()[0]), (header, row)
    finally:
        engine.cli("kill", *ids)


def test_the_daemon_keeps_a_runs_pace_over_its_last_half_minute(tmp_path: Path) -> None:
    live = LiveRun("r1", RunDir(tmp_path), 1, 0, backend_for({"workload": "synthetic"}))
    live.stored_to(0, 100.0)
    assert live.rate is None  # one store says nothing of a pace
    now = 100.0
    for step in range(5, 6001, 5):  # 50 steps a second for 2 minutes, 10 stores a second
        now += 0.1
        live.stored_to(step, now)
    assert live.rate == pytest.approx(50.0)
    for step in range(6010, 10001, 10):  # then 100 a second for 40 s: only that counts
        now += 0.1
        live.stored_to(step, now)
    assert live.rate == pytest.approx(100.0, rel=0.05)
    live.stored_to(10, now + 1.0)  # it went back (a retry): the old pace is dropped
    live.stored_to(60, now + 2.0)
    assert live.rate == pytest.approx(50.0)
