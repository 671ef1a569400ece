"""``traintop restart RUN``: a new run doing what RUN did, on a real daemon."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.client.cli.restart_cmd import restart_name
from engine.client.client import EngineError
from tests.conftest import TERMINAL, Engine
from tests.test_attach import launch


def test_restart_of_a_finished_run_keeps_its_config_and_applies_overrides(
    engine: Engine, tmp_path: Path
) -> None:
    first = engine.cli("start", "synthetic", "steps=5", "lr=0.03", "dim=8", "--name", "base",
                       "--device", "cpu", "--json").json()
    engine.wait_state(first["id"], "finished")

    result = engine.cli("restart", first["id"], "batch=7", "--json")
    assert result.code == 0, result.err
    again = result.json()
    assert again["id"] != first["id"] and again["name"] == "base-r2"
    assert again["config"] == {**first["config"], "batch": 7}
    assert (again["workload"], again["device"], again["cwd"]) == (
        first["workload"], first["device"], first["cwd"])
    assert engine.wait_state(again["id"], *TERMINAL)["state"] == "finished"

    # A restart of the restart counts on: base-r3, not base-r2-r2.
    third = engine.cli("restart", again["id"], "--no-wait")
    assert third.code == 0, third.err
    assert third.out.startswith("started ") and "(base-r3)" in third.out
    assert f"a restart of {again['id']}" in third.out
    # Each says what it is a restart of, as a fork says its parent; a rebuild keeps it.
    assert again["restart_of"] == first["id"]
    shown = engine.cli("show", "base-r3").out.splitlines()
    assert f"restarts  {again['id']}, from step 0" in shown, shown
    events = engine.run("base-r3")["events"]
    assert events[0]["reason"] == f"created by user: a restart of {again['id']}"
    engine.wait_state("base-r3", *TERMINAL)
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "rebuild").code == 0
    assert engine.run("base-r3")["restart_of"] == again["id"]
    assert engine.run("base")["restart_of"] is None
    refused = engine.call  # a request naming a run that is not there: refused, nothing made
    try:
        refused("start", workload="synthetic", restart_of="zzzzzz")
    except EngineError as exc:
        assert exc.message == "no run 'zzzzzz' to restart"
    else:
        raise AssertionError("a restart of no run was made")
    assert len(engine.all_runs()) == 3


def test_a_restart_keeps_the_runs_divergence_watch_unless_told(engine: Engine) -> None:
    off = engine.cli("start", "synthetic", "steps=5", "--no-divergence-pause", "--json").json()
    loose = engine.cli("start", "synthetic", "steps=5", "--divergence-factor", "50",
                       "--json").json()
    for run in (off, loose):
        engine.wait_state(run["id"], *TERMINAL)
    assert engine.cli("restart", off["id"], "--json").json()["divergence_factor"] is None
    assert engine.cli("restart", loose["id"], "--json").json()["divergence_factor"] == 50
    told = engine.cli("restart", off["id"], "--divergence-factor", "4", "--json").json()
    assert told["divergence_factor"] == 4


def test_unknown_run_or_bad_override_is_one_line_and_creates_nothing(engine: Engine) -> None:
    run = engine.cli("start", "synthetic", "steps=3", "--json").json()
    engine.wait_state(run["id"], "finished")

    unknown = engine.cli("restart", "nosuch")
    assert unknown.code == 1 and unknown.out == ""
    assert len(unknown.err.strip().splitlines()) == 1 and "nosuch" in unknown.err

    bad = engine.cli("restart", run["id"], "no_such_key=1")
    assert bad.code == 1 and len(bad.err.strip().splitlines()) == 1
    assert "no_such_key" in bad.err

    badtype = engine.cli("restart", run["id"], "steps=many")
    assert badtype.code == 1 and "steps=many" in badtype.err
    assert [r["id"] for r in engine.all_runs()] == [run["id"]]


def test_restart_of_a_wrapped_run_runs_its_command_again(
    engine: Engine, tmp_path: Path
) -> None:
    marks = tmp_path / "marks.txt"
    script = "import sys; open(sys.argv[1], 'a').write('ran\\n'); print('loss 0.5')"
    first = engine.cli("run", "--json", "--name", "cmd", "--", sys.executable, "-c", script,
                       str(marks)).json()
    engine.wait_state(first["id"], *TERMINAL)

    result = engine.cli("restart", first["id"], "--json")
    assert result.code == 0, result.err
    again = result.json()
    assert again["kind"] == "wrapped" and again["name"] == "cmd-r2"
    assert again["config"]["command"] == first["config"]["command"]
    assert again["restart_of"] == first["id"]
    assert engine.wait_state(again["id"], *TERMINAL)["state"] == "finished"
    assert marks.read_text() == "ran\nran\n"

    refused = engine.cli("restart", first["id"], "lr=1")
    assert refused.code == 2 and len(refused.err.strip().splitlines()) == 1
    assert len(engine.all_runs()) == 2


def test_restart_names_skip_taken_ones() -> None:
    assert restart_name("train", set()) == "train-r2"
    assert restart_name("train", {"train-r2", "train-r3"}) == "train-r4"
    assert restart_name("train-r7", {"train-r2"}) == "train-r3"


def test_restart_of_an_attached_run_says_to_run_the_script_again(
    engine: Engine, tmp_path: Path
) -> None:
    proc, run_id = launch(tmp_path, "steps=3")
    assert proc.wait(timeout=60) == 0
    engine.wait_state(run_id, *TERMINAL)

    result = engine.cli("restart", run_id)
    assert result.code == 1 and result.out == ""
    assert len(result.err.strip().splitlines()) == 1 and "running it again" in result.err
    assert [r["id"] for r in engine.all_runs()] == [run_id]
