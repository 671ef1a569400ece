"""User mistakes at the command line: one line on stderr, a non-zero exit, nothing stored."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Engine

BOOM = """\
def train(run):
    for step in run.steps(10):
        raise ValueError('boom')
"""
NO_IMPORT = """\
import traintop_no_such_module

def train(run):
    pass
"""


def stored(engine: Engine) -> Any:
    """What the engine keeps: each run as listed, its event count, and the run directories."""
    listed = engine.cli("ls", "--json")
    assert listed.code == 0
    runs = engine.all_runs()
    assert [r["id"] for r in listed.json()] == [r["id"] for r in runs]
    keep = ("id", "name", "workload", "config", "state", "released", "exit_code", "device")
    rows = [{k: r[k] for k in keep} for r in runs]
    events = {r["id"]: engine.run(r["id"])["event_count"] for r in runs}
    dirs = sorted(p.name for p in engine.paths.runs.iterdir())
    return rows, events, dirs


def refused(engine: Engine, *argv: str, code: int = 1, mentions: str = "") -> str:
    """Run a command that must fail cleanly; returns its one line of error."""
    before = stored(engine)
    result = engine.cli(*argv)
    assert result.code == code, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("traintop: "), lines
    assert result.out == ""
    assert mentions.lower() in lines[0].lower(), lines[0]
    assert stored(engine) == before
    return lines[0]


@pytest.fixture
def workload_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "workloads"
    folder.mkdir()
    (folder / "good.py").write_text("def train(run):\n    pass\n")
    (folder / "broken.py").write_text("def train(run):\n    return (\n")
    (folder / "boom.py").write_text(BOOM)
    (folder / "noimport.py").write_text(NO_IMPORT)
    return folder


# -- mistakes that need no run -----------------------------------------------------

USAGE_ERRORS = {
    "a key given twice": (["start", "synthetic", "lr=0.1", "steps=5", "lr=0.2"],
                          "lr is given twice (lr=0.1, lr=0.2); give it once"),
    "unknown flag": (["ls", "--bogus"], "--bogus"),
    "unknown command": (["frobnicate"], "frobnicate"),
    "misspelt command": (["lss"], "invalid choice: 'lss'; did you mean 'ls'? (see 'traintop"),
    "misspelt option": (["export", "x", "--swep", "g"],
                        "--swep g; did you mean --sweep? (see 'traintop export --help')"),
    "missing argument": (["show"], "run"),
    "flag value not a number": (["start", "synthetic", "--steps", "many"], "many"),
    "bad choice": (["export", "abc", "--format", "xml"], "xml"),
    "unknown state": (["ls", "--state", "running,runing"], "no state 'runing'"),
    "no runs asked for": (["ls", "-n", "0"], "at least 1"),
    "no run to remove": (["rm"], "RUN"),
    "unknown time": (["ls", "--since", "yesterday"], "not a time"),
    "negative timeout": (["wait", "x", "--timeout", "-1"], "must be 0 seconds or more, not -1"),
    "negative bytes": (["logs", "x", "--bytes", "-5"], "--bytes: must be 0 or more, not -5"),
}


@pytest.mark.parametrize("argv, mentions", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_malformed_command_line_exits_2(engine: Engine, argv: list[str], mentions: str) -> None:
    line = refused(engine, *argv, code=2, mentions=mentions)
    assert "--help" in line


REFUSED = {
    "unknown run": (["show", "zzzzzz"], "no run matches"),
    "unknown run to kill": (["kill", "zzzzzz"], "no run matches"),
    "unknown run to pause": (["pause", "zz"], "no run matches"),
    "unknown run to remove": (["rm", "zzzzzz"], "no run matches"),
    "unknown run to fork": (["fork", "zzzzzz", "lr=1"], "no run matches"),
    "unknown run logs": (["logs", "zzzzzz"], "no run matches"),
    "unknown run export": (["export", "zzzzzz"], "no run matches"),
    "empty run ref": (["show", ""], "run id or name"),
    "unknown sweep": (["ls", "--sweep", "nope"], "no sweep named nope"),
    "unknown sweep to kill": (["kill", "--sweep", "nope"], "no sweep named nope"),
    "unknown sweep to remove": (["rm", "--sweep", "nope", "-f"], "no sweep named nope"),
    "bad override key": (["start", "synthetic", "nosuchkey=1"], "nosuchkey"),
    "misspelt override key": (["start", "synthetic", "lrr=1"],
                              "unknown config key 'lrr' (did you mean 'lr'? known: batch,"),
    "bad override value": (["start", "synthetic", "lr=abc"], "lr=abc"),
    "fractional int": (["start", "synthetic", "steps=1.5"], "integer"),
    "int overflow": (["start", "synthetic", "steps=1e20"], "steps=1e20: out of range"),
    "int literal overflow": (["start", "synthetic", "seed=-100000000000000000000"], "range"),
    "float overflow": (["start", "synthetic", "lr=1e400"], "lr=1e400: out of range"),
    "malformed override": (["start", "synthetic", "lr"], "key=value"),
    "empty override key": (["start", "synthetic", "=3"], "key=value"),
    "non-positive --steps": (["start", "synthetic", "--steps", "0"], "positive"),
    "missing file": (["start", "/nope/x.py"], "not found"),
    "unknown built-in": (["start", "nosuchworkload"], "unknown workload"),
    "unknown device": (["start", "synthetic", "--device", "tpu"], "tpu"),
    "no such GPU": (["start", "synthetic", "--device", "cuda:99"], "cuda:99"),
    "bad name": (["start", "synthetic", "--name", "two words"], "name"),
    "name too long": (["start", "synthetic", "--name", "n" * 101], "limit is 100"),
    "escape in a name": (["start", "synthetic", "--name", "red\x1b[31m"], "control"),
    "bad --metric regex": (["run", "--metric", "x=(", "--", sys.executable], "--metric"),
    "--metric without a name": (["run", "--metric", "loss", "--", sys.executable], "NAME=REGEX"),
    "--only-patterns without one": (["run", "--only-patterns", "--", sys.executable], "needs"),
}


@pytest.mark.parametrize("argv, mentions", REFUSED.values(), ids=REFUSED.keys())
def test_refused_requests_exit_1(engine: Engine, argv: list[str], mentions: str) -> None:
    refused(engine, *argv, mentions=mentions)


def test_cuda_without_a_gpu(engine: Engine) -> None:
    if engine.call("status")["gpus"]:
        pytest.skip("this machine has a GPU")
    refused(engine, "start", "synthetic", "--device", "cuda", mentions="no NVIDIA GPU")


def test_a_gpu_past_the_last_is_named_as_asked_on_a_machine_with_gpus() -> None:
    # The daemon sees real GPUs only; the check itself is given one here, so the
    # message a GPU machine prints ("cuda:99", as typed) is held on every machine.
    from engine.server.devices import DeviceError, GpuInfo, check_device

    one, two = [GpuInfo(0, 0, 2**34)], [GpuInfo(0, 0, 2**34), GpuInfo(1, 0, 2**34)]
    with pytest.raises(DeviceError, match=r"no GPU cuda:99 .* it has cuda:0$"):
        check_device("cuda:99", one)
    with pytest.raises(DeviceError, match=r"cuda:2 .* cuda:0 to cuda:1$"):
        check_device("cuda:2", two)
    assert check_device("cuda:1", two) == "cuda:1"


def test_bad_workload_files(
    engine: Engine, workload_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workload_dir)
    refused(engine, "start", "good.py:nofn", mentions="no top-level function nofn")
    refused(engine, "start", f"{workload_dir}/good.py:nofn", mentions="nofn")
    refused(engine, "start", "broken.py", mentions="syntax error")
    refused(engine, "start", "missing.py", mentions=str(workload_dir / "missing.py"))
    refused(engine, "start", "good.py", "--device", "gpu", mentions="unknown device")
    refused(engine, "start", "good.py", "x=[1, 1e400]", mentions="out of range")
    refused(engine, "start", "good.py", "x=99999999999999999999", mentions="out of range")
    assert engine.cli("ls", "--json").json() == []


# -- mistakes about existing runs ----------------------------------------------------


def test_wrong_state_and_duplicate_names(engine: Engine) -> None:
    finished = engine.call("start", workload="synthetic", name="done", overrides=["steps=3"])
    running = engine.call(
        "start", workload="synthetic", name="busy", overrides=["steps=100000", "sleep=0.01"]
    )
    engine.wait_state(finished["id"], "finished")
    engine.wait_step(running["id"], 1)
    assert engine.run(running["id"])["state"] == "running"

    refused(engine, "resume", running["id"], mentions="cannot resume a run that is running")
    refused(engine, "resume", "busy", mentions="cannot resume")
    refused(engine, "pause", finished["id"], mentions="cannot pause a run that is finished")
    refused(engine, "pause", "done", "--release", mentions="cannot release")
    refused(engine, "kill", finished["id"], mentions="cannot kill a run that is finished")
    refused(engine, "resume", "done", mentions="cannot resume a run that is finished")
    refused(engine, "kill", "busy", "--grace", "-1", mentions="grace", code=2)
    refused(engine, "start", "synthetic", "--name", "done", mentions="already exists")
    refused(engine, "start", "synthetic", "--name", "busy", mentions="already exists")
    refused(engine, "fork", "busy", "--name", "done", mentions="already exists")
    refused(engine, "fork", "done", "nosuchkey=1", mentions="nosuchkey")
    refused(engine, "fork", "done", "steps=1e20", mentions="out of range")
    assert engine.run("busy")["state"] == "running"


def test_ambiguous_prefix(engine: Engine, workload_dir: Path) -> None:
    """Runs are made until two ids share a first character (at most 33: pigeonhole)."""
    spec = str(workload_dir / "noimport.py")
    firsts: dict[str, str] = {}
    while True:
        result = engine.cli("start", spec, "--no-wait", "--json")
        assert result.code == 0, result
        run_id = result.json()["id"]
        if run_id[0] in firsts:
            break
        firsts[run_id[0]] = run_id
    pair = sorted([firsts[run_id[0]], run_id])
    for run in [*firsts.values(), run_id]:
        engine.wait_state(run, "failed")  # settled, so nothing stored moves under us
    prefix = run_id[0]

    line = refused(engine, "show", prefix, mentions="ambiguous")
    assert all(run in line for run in pair)
    refused(engine, "kill", prefix, mentions="ambiguous")
    refused(engine, "logs", prefix, mentions="ambiguous")
    refused(engine, "fork", prefix, mentions="ambiguous")
    # The full id, and the name, still pick one run.
    shown = engine.cli("show", pair[0], "--json")
    assert shown.code == 0 and shown.json()["id"] == pair[0]
    name = shown.json()["name"]
    assert engine.cli("show", name, "--json").json()["id"] == pair[0]


# -- a workload that fails -----------------------------------------------------------


def test_failing_workload_is_reported_and_stored(engine: Engine, workload_dir: Path) -> None:
    result = engine.cli("start", str(workload_dir / "boom.py"), "--name", "boom")
    assert result.code == 1, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "failed" in lines[0]
    assert "ValueError" in lines[0] and "boom" in lines[0]
    assert "Traceback" not in result.err

    run = engine.run("boom")
    assert run["state"] == "failed"
    assert run["exit_code"] == 1
    assert "ValueError: boom" in run["exit_reason"]
    tail = run["stderr_tail"]
    assert "Traceback (most recent call last)" in tail
    assert "raise ValueError('boom')" in tail
    assert [e["state"] for e in run["events"]][-1] == "failed"

    shown = engine.cli("show", "boom")
    assert shown.code == 0
    assert "ValueError: boom" in shown.out


def test_failing_import_is_reported(engine: Engine, workload_dir: Path) -> None:
    result = engine.cli("start", str(workload_dir / "noimport.py"))
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "traintop_no_such_module" in lines[0]
    run = engine.cli("ls", "--json").json()[0]
    assert run["state"] == "failed"
    assert run["exit_code"] == 1


def test_a_store_from_a_newer_traintop_is_one_line_and_left_alone(engine: Engine) -> None:
    import sqlite3

    from engine.server.store import SCHEMA_VERSION

    engine.paths.home.mkdir(parents=True)
    db = sqlite3.connect(engine.paths.store)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    db.close()
    result = engine.cli("ls")
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    assert "could not start" in result.err and "newer" in result.err
    db = sqlite3.connect(engine.paths.store)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5
    db.close()


def test_a_misspelt_run_or_sweep_name_is_answered_with_the_closest(engine: Engine) -> None:
    made = engine.cli("sweep", "synthetic", "lr=1e-3,2e-3", "steps=5", "--name", "baseline",
                      "--json")
    first = made.json()[0]
    assert engine.cli("wait", "--sweep", "baseline").code == 0  # refused() compares states
    line = refused(engine, "show", "baseline-lr1e3", mentions="no run matches")
    assert line.endswith(f"did you mean 'baseline-lr1e-3' ({first['id']}) or "
                         f"'baseline-lr2e-3' ({made.json()[1]['id']})?"), line
    line = refused(engine, "wait", "--sweep", "baselin", code=2)
    assert line == "traintop: no sweep named baselin (did you mean 'baseline'?)"
    line = refused(engine, "ls", "--sweep", "zzz")  # nothing close: where to look
    assert line == "traintop: no sweep named zzz ('traintop ls --sweeps' lists them)"
    assert refused(engine, "show", "zzzzzz") == "traintop: no run matches 'zzzzzz'"
