"""Tags and notes: ``traintop tag``, ``traintop note``, ``ls -t`` and words, ``show``.

Real daemon and store; the runs are stored before the daemon starts (with their
run directories), as a restarted daemon finds them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.rundir.paths import child_env, write_json_atomic
from engine.rundir.state_dir import DIR_MODE
from engine.server.store import Store
from tests.conftest import TERMINAL, Engine

RUNS = ("aaaa01", "aaaa02", "aaaa03")


@pytest.fixture
def stored(engine: Engine) -> Engine:
    engine.paths.home.mkdir(mode=DIR_MODE, parents=True)
    engine.paths.runs.mkdir(mode=DIR_MODE)
    store = Store(engine.paths.store)
    for n, run_id in enumerate(RUNS):
        rundir = engine.paths.run_dir(run_id)
        rundir.path.mkdir(mode=DIR_MODE)
        # what a rebuild makes the run's row from
        write_json_atomic(rundir.launch, {"workload": "synthetic", "config": {},
                                          "name": f"run-{n}", "generation": 1})
        store.create_run(
            {"id": run_id, "name": f"run-{n}", "workload": "synthetic", "config": {},
             "state": "finished", "device": "cpu", "cwd": "/", "created": 1.7e9 + n,
             "released": False},
            "made by the test",
        )
    store.close()
    return engine


def listed(engine: Engine, *argv: str) -> list[str]:
    result = engine.cli("ls", "-q", *argv)
    assert result.code == 0, result.err
    return result.out.split()


def test_tags_are_added_taken_off_and_found(stored: Engine) -> None:
    assert "TAGS" not in stored.cli("ls").out.splitlines()[0]  # no column until one is used

    tagged = stored.cli("tag", "baseline", "aaaa01", "aaaa02", "aaaa01")
    assert tagged.code == 0, tagged.err
    assert tagged.out.splitlines() == ["aaaa01 (run-0): baseline", "aaaa02 (run-1): baseline"]
    assert stored.cli("tag", "best-lr", "aaaa02").code == 0
    assert stored.run("aaaa02")["tags"] == ["baseline", "best-lr"]  # in the order added

    assert listed(stored, "-t", "baseline") == ["aaaa01", "aaaa02"]
    assert listed(stored, "-t", "baseline", "-t", "best-lr") == ["aaaa02"]
    whole = stored.cli("ls", "-t", "best")  # a tag matches whole: no run has this one
    assert whole.code == 1 and whole.err == ("traintop: no run is tagged 'best' (did you "
                                             "mean 'best-lr'?)\n")
    assert listed(stored, "best") == ["aaaa02"]  # a word matches in tags as in names
    assert listed(stored, "#best") == ["aaaa02"]  # and as the TUI shows them
    header, *rows = stored.cli("ls").out.splitlines()
    assert header.split()[-1] == "TAGS" and rows[1].endswith("baseline best-lr")
    compared = stored.cli("diff", "aaaa02", "aaaa03", "--json").json()["outcomes"]
    assert compared["tags"] == {"aaaa02": "baseline best-lr", "aaaa03": ""}

    untagged = stored.cli("tag", "-d", "baseline", "aaaa01", "aaaa02")
    assert untagged.out.splitlines() == ["aaaa01 (run-0): no tags", "aaaa02 (run-1): best-lr"]
    gone = stored.cli("ls", "-t", "baseline")
    assert gone.code == 1 and "no run is tagged 'baseline'" in gone.err
    # Taking off a tag a run has not (misspelt, most often) is said, not passed over.
    missed = stored.cli("tag", "-d", "best-lrr", "aaaa02")
    assert missed.code == 1 and missed.out == "" and missed.err == (
        "traintop: aaaa02 has no tag 'best-lrr' (its tags: best-lr)\n")
    assert stored.run("aaaa02")["tags"] == ["best-lr"]


def test_a_note_is_set_shown_and_cleared(stored: Engine) -> None:
    assert stored.cli("note", "aaaa03").out == "aaaa03 has no note\n"
    text = "lr too high?\nrerun with warmup"
    assert stored.cli("note", "aaaa03", text).out == "aaaa03 (run-2): note set\n"
    assert stored.cli("note", "run-2").out == text + "\n"
    shown = stored.cli("show", "aaaa03").out.splitlines()
    assert "note      lr too high?" in shown and "  rerun with warmup" in shown
    assert stored.cli("note", "aaaa03", "").out == "aaaa03 (run-2): note cleared\n"
    assert stored.run("aaaa03")["note"] is None


def test_bad_tags_and_notes_are_one_line_and_change_nothing(stored: Engine) -> None:
    assert stored.cli("tag", "keep", "aaaa01").code == 0
    spaced = stored.cli("tag", "two words", "aaaa01")
    assert spaced.code == 2 and "must be one word" in spaced.err
    typo = stored.cli("tag", "new", "aaaa01", "zzzzzz")  # a typo among the runs: none tagged
    assert typo.code == 1 and typo.err == "traintop: no run matches 'zzzzzz'\n"
    control = stored.cli("note", "aaaa01", "beep\x07")
    assert control.code == 1 and control.err.count("\n") == 1 and "control" in control.err
    for n in range(19):  # 20 tags are allowed, the 21st is not
        assert stored.cli("tag", f"t{n}", "aaaa01").code == 0
    over = stored.cli("tag", "one-too-many", "aaaa01")
    assert over.code == 1 and "the limit is 20" in over.err
    run = stored.run("aaaa01")
    assert run["tags"] == ["keep", *(f"t{n}" for n in range(19))] and run["note"] is None


def test_tags_and_notes_survive_a_restart_and_a_rebuild(stored: Engine) -> None:
    assert stored.cli("tag", "keep", "aaaa02").code == 0
    assert stored.cli("note", "aaaa02", "the one to beat").code == 0
    assert stored.cli("engine", "stop").code == 0
    assert stored.run("aaaa02")["tags"] == ["keep"]  # a new daemon reads them from the store
    assert stored.cli("engine", "stop").code == 0
    rebuilt = stored.cli("engine", "rebuild")
    assert rebuilt.code == 0, rebuilt.err
    run = stored.run("aaaa02")  # the store made anew from the run directories
    assert run["tags"] == ["keep"] and run["note"] == "the one to beat"


TAGGED_SCRIPT = """
import traintop
run = traintop.init(config={"steps": 3}, name="script", tags=["attached", "v2"])
for step in run.steps(3):
    run.log(loss=1.0 / (step + 1))
"""


def test_new_runs_take_the_tags_they_are_started_with(engine: Engine, tmp_path: Path) -> None:
    started = engine.cli("start", "synthetic", "steps=5", "--tag", "base", "--tag", "lr",
                         "--name", "base", "--json")
    assert started.code == 0, started.err
    assert started.json()["tags"] == ["base", "lr"]
    swept = engine.cli("sweep", "synthetic", "seed=1,2", "steps=5", "--tag", "grid", "--json")
    assert [r["tags"] for r in swept.json()] == [["grid"], ["grid"]]
    engine.wait_state("base", "finished")
    fork = engine.cli("fork", "base", "steps=10", "--tag", "tuned", "--json").json()
    assert fork["tags"] == ["tuned"]  # a fork says what it is, not what its parent was
    again = engine.cli("restart", "base", "--json", "--no-wait").json()
    assert again["tags"] == ["base", "lr"]  # a restart is the same run again
    script = tmp_path / "tagged.py"
    script.write_text(TAGGED_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], env=child_env(), timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert engine.run("script")["tags"] == ["attached", "v2"]

    spaced = engine.cli("sweep", "synthetic", "seed=1,2", "--tag", "two words")
    assert spaced.code == 2 and "must be one word" in spaced.err
    assert len(engine.all_runs()) == 6  # nothing made for it

    for run_id in (fork["id"], again["id"]):
        engine.wait_state(run_id, *TERMINAL)
    engine.wait_state("script", *TERMINAL)
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "rebuild").code == 0  # kept in each run's directory
    assert {r["name"]: r["tags"] for r in engine.all_runs()} == {
        "base": ["base", "lr"], swept.json()[0]["name"]: ["grid"],
        swept.json()[1]["name"]: ["grid"], fork["name"]: ["tuned"], again["name"]: ["base", "lr"],
        "script": ["attached", "v2"],
    }
