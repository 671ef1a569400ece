"""The engine end to end: a real daemon, real shims and workers, a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from engine.client.client import Client
from engine.rundir.paths import read_json
from tests.conftest import TERMINAL, Engine

SLOW = ["sleep=0.01", "seed=3"]


def start(engine: Engine, *args: str) -> str:
    result = engine.cli("start", *args, "--json")
    assert result.code == 0, result.err
    run_id: str = result.json()["id"]
    return run_id


def test_run_finishes_with_every_step_and_its_events(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=60")
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished"
    assert run["step"] == 60 and run["total_steps"] == 60
    assert run["exit_code"] == 0
    assert sorted(engine.losses(run_id)) == list(range(60))
    states = [e["state"] for e in run["events"]]
    assert states == ["queued", "starting", "running", "finished"]
    listed = engine.cli("ls", "--json").json()
    assert [r["id"] for r in listed] == [run_id]
    assert listed[0]["last"]["loss"] == engine.losses(run_id)[59]


def test_pause_and_resume_continue_the_same_losses(engine: Engine) -> None:
    reference = start(engine, "synthetic", "steps=150", *SLOW)
    paused = start(engine, "synthetic", "steps=150", *SLOW)
    engine.wait_step(paused, 20)
    assert engine.cli("pause", paused).code == 0
    run = engine.run(paused)
    assert run["state"] == "paused" and not run["released"]
    held = run["step"]
    time.sleep(0.6)
    assert engine.run(paused)["step"] == held  # no progress while paused
    assert engine.cli("resume", paused).code == 0
    for run_id in (reference, paused):
        assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    assert engine.losses(paused) == engine.losses(reference)
    assert len(engine.losses(reference)) == 150


def test_pause_with_release_ends_the_worker_and_resumes_bit_for_bit(engine: Engine) -> None:
    reference = start(engine, "synthetic", "steps=150", *SLOW)
    released = start(engine, "synthetic", "steps=150", *SLOW)
    engine.wait_step(released, 30)
    pid = engine.run(released)["pid"]
    assert engine.cli("pause", released, "--release").code == 0
    run = engine.run(released)
    assert run["state"] == "paused" and run["released"] and run["pid"] is None
    assert run["checkpoint"] and Path(run["checkpoint"]).exists()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert engine.cli("resume", released).code == 0
    for run_id in (reference, released):
        assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    assert engine.losses(released) == engine.losses(reference)
    assert engine.run(released)["generation"] == 2


def test_fork_without_overrides_reproduces_the_parent_and_forks_of_forks_work(
    engine: Engine,
) -> None:
    parent = start(engine, "synthetic", "steps=200", *SLOW)
    engine.wait_step(parent, 25)
    forked = engine.cli("fork", parent, "--json")
    assert forked.code == 0, forked.err
    child = forked.json()
    assert child["parent_id"] == parent and child["fork_step"] >= 25
    engine.wait_step(child["id"], child["fork_step"] + 10)
    grandchild = engine.cli("fork", child["id"], "lr=0.01", "--json").json()
    assert grandchild["parent_id"] == child["id"]
    assert grandchild["config"]["lr"] == 0.01
    for run_id in (parent, child["id"], grandchild["id"]):
        assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"

    parent_losses = engine.losses(parent)
    child_losses = engine.losses(child["id"])
    assert min(child_losses) == child["fork_step"]
    assert child_losses == {s: v for s, v in parent_losses.items() if s >= child["fork_step"]}
    assert engine.run(parent)["step"] == 200  # the parent went on to the end

    grand_losses = engine.losses(grandchild["id"])
    fork_step = grandchild["fork_step"]
    assert min(grand_losses) == fork_step
    assert grand_losses[fork_step + 5] != child_losses[fork_step + 5]  # lr changed the path
    shown = engine.run(parent)
    assert shown["children"] == [child["id"]]
    assert any("forked from" in e["reason"] for e in engine.run(child["id"])["events"])


def test_fork_of_a_finished_run_starts_from_its_final_checkpoint(engine: Engine) -> None:
    parent = start(engine, "synthetic", "steps=40")
    engine.wait_state(parent, *TERMINAL)
    child = engine.cli("fork", parent, "steps=60", "--json").json()
    assert child["fork_step"] == 40
    run = engine.wait_state(child["id"], *TERMINAL)
    assert run["state"] == "finished"
    assert sorted(engine.losses(child["id"])) == list(range(40, 60))
    # Without more steps a fork would have nothing to train: refused, one or a list of
    # them alike, and the line says what to do; nothing is made.
    for overrides in (["lr=0.01"], ["lr=0.01,0.1"], ["lr=0.01", "steps=30"]):
        same = engine.cli("fork", parent, *overrides)
        assert same.code == 1 and same.out == "", same
        steps = 30 if "steps=30" in overrides else 40
        assert same.err == (f"traintop: run {parent} is at step 40, so a fork with steps={steps} "
                            "would have nothing to train: give it more steps, e.g. steps=80\n")
    assert len(engine.all_runs()) == 2


STUBBORN = textwrap.dedent(
    """
    import signal, subprocess, time

    def train(run):
        # A data-loader-like child in the same process group, and a worker that
        # ignores SIGTERM, so only the SIGKILL after the grace period ends it.
        child = subprocess.Popen(["sleep", "1000"])
        with open(run.dir / "child.pid", "w") as f:
            f.write(str(child.pid))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for step in run.steps(100000):
            run.log(loss=1.0 / (step + 1))
            time.sleep(0.01)
    """
)


def test_kill_escalates_to_sigkill_and_leaves_no_process(engine: Engine, tmp_path: Path) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    run_id = start(engine, str(script))
    engine.wait_step(run_id, 10)
    run = engine.run(run_id)
    pgid = run["pgid"]
    child_pid = int((Path(run["dir"]) / "child.pid").read_text())
    result = engine.cli("kill", run_id, "--grace", "1")
    assert result.code == 0, result.err
    run = engine.wait_state(run_id, "killed", timeout=20)
    assert run["exit_reason"].startswith("killed by user with SIG")
    assert engine.losses(run_id)  # its data is kept
    time.sleep(0.5)  # the shim sweeps the group right after the worker's exit
    leftovers = [p for p in psutil.process_iter() if _pgid(p.pid) == pgid]
    assert leftovers == []
    assert not psutil.pid_exists(child_pid)
    exit_info = read_json(Path(run["dir"]) / "exit.json")
    assert exit_info["returncode"] == -9  # SIGTERM was ignored, SIGKILL ended it


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_daemon_restart_readopts_runs_and_loses_no_metric(engine: Engine) -> None:
    running = start(engine, "synthetic", "steps=500", "sleep=0.02")
    short = start(engine, "synthetic", "steps=40", *SLOW)
    engine.wait_step(running, 20)
    old_pid = engine.daemon_pid()
    assert engine.cli("engine", "stop").code == 0
    spool = engine.paths.run_dir(running).spool
    size_at_stop = spool.stat().st_size
    # Both runs keep logging while no daemon runs (the short one may end meanwhile). The
    # spool grows at the worker's next flush, which a loaded machine can delay past a second.
    deadline = time.monotonic() + 30
    while spool.stat().st_size == size_at_stop and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spool.stat().st_size > size_at_stop
    time.sleep(1.0)  # give the short run time to end with no daemon to see it
    assert not engine.paths.socket.exists()

    assert engine.cli("engine", "start").code == 0
    assert engine.daemon_pid() != old_pid
    for run_id, steps in ((running, 500), (short, 40)):
        run = engine.wait_state(run_id, *TERMINAL)
        assert run["state"] == "finished", run
        assert sorted(engine.losses(run_id)) == list(range(steps))
    with engine.client() as client:
        metrics = client.all_metrics(running)
    assert len(metrics) == 500  # each point stored exactly once


def test_ten_thousand_points_a_second_are_all_stored(engine: Engine) -> None:
    # 100 keys a step at ~100 steps a second for 3 seconds.
    run_id = start(engine, "synthetic", "steps=300", "extra_metrics=99", "sleep=0.01")
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished"
    with engine.client() as client:
        points = client.all_metrics(run_id)
    assert len(points) == 300 * 100
    duration = points[-1][3] - points[0][3]
    assert len({(p[0], p[1]) for p in points}) == 300 * 100
    assert duration < 30


def test_several_runs_at_once_and_a_second_daemon_refuses_to_start(engine: Engine) -> None:
    ids = [start(engine, "synthetic", "steps=80", "sleep=0.01", f"seed={i}") for i in range(3)]
    states = {engine.run(i)["state"] for i in ids}
    assert states <= {"running", "finished"}
    pid = engine.daemon_pid()
    second = subprocess.run(
        [sys.executable, "-m", "engine.server.daemon"],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, TRAINTOP_HOME=str(engine.paths.home)),
    )
    assert second.returncode == 0 and "already runs" in second.stderr
    assert engine.daemon_pid() == pid
    assert engine.call("ping")["pong"]
    for run_id in ids:
        assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    losses = [engine.losses(i) for i in ids]
    assert losses[0] != losses[1]  # different seeds, different runs


def test_logs_and_export(engine: Engine, tmp_path: Path) -> None:
    run_id = start(engine, "synthetic", "steps=30", "print_every=10")
    engine.wait_state(run_id, *TERMINAL)
    logs = engine.cli("logs", run_id)
    assert logs.code == 0 and logs.out.count("\n") >= 3
    followed = engine.cli("logs", run_id, "-f")  # returns once the run has ended
    assert followed.out == logs.out
    shown = engine.cli("show", run_id).out.splitlines()  # its lowest loss and how long
    lowest = min(engine.losses(run_id).values())
    assert f"lowest    loss={lowest:.5g}" in shown, shown
    assert any(line.startswith("ran       ") and line.endswith("s") for line in shown), shown
    # Nothing on the stream asked for: said, with where its output is, not a silent 0.
    quiet = engine.cli("logs", run_id, "--stderr")
    assert quiet.code == 0 and quiet.out == "" and quiet.err == (
        f"traintop: nothing on its stderr; its stdout has output: traintop logs {run_id}\n")
    failed = engine.call("start", workload="synthetic", overrides=["steps=30", "fail_at=3"])["id"]
    assert engine.wait_state(failed, *TERMINAL)["state"] == "failed"
    crashed = engine.cli("logs", failed)
    assert crashed.out == "" and crashed.err == ("traintop: nothing on its stdout; its stderr "
                                                 f"has output: traintop logs {failed} --stderr\n")
    assert "RuntimeError" in engine.cli("logs", failed, "--stderr").out
    out_csv = tmp_path / "m.csv"
    assert engine.cli("export", run_id, "--format", "csv", "-o", str(out_csv)).code == 0
    rows = out_csv.read_text().splitlines()
    assert rows[0] == "run,step,key,value,time" and len(rows) == 31
    exported = engine.cli("export", run_id, "--format", "json")
    data = json.loads(exported.out)
    assert data["run"]["id"] == run_id
    assert [p[0] for p in data["metrics"]["loss"]] == list(range(30))
    assert [p[1] for p in data["metrics"]["loss"]] == [engine.losses(run_id)[s] for s in range(30)]


def test_the_entry_point_starts_the_engine_early_and_once(engine: Engine) -> None:
    """``traintop ls`` with no engine starts one before its imports and waits for that one
    (the daemon log would say "already runs" for a second); ``--help`` starts none."""
    env = dict(os.environ, TRAINTOP_HOME=str(engine.paths.home))

    def traintop(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tui.main", *argv], capture_output=True,
                              text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)

    assert traintop("ls", "--help").returncode == 0
    log = engine.paths.daemon_log
    assert not engine.paths.socket.exists() and not log.exists()
    listed = traintop("ls")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("no runs yet")
    pid = engine.daemon_pid()
    assert pid is not None and engine.call("ping")["pong"]
    time.sleep(1.0)  # a second daemon, had one been started, has said so by now
    assert "already runs" not in log.read_text()
    assert engine.daemon_pid() == pid


def test_a_daemon_slow_to_start_is_waited_for_while_it_lives(engine: Engine) -> None:
    # A deadline shorter than any start: as a daemon importing on a machine busy
    # training takes longer than the usual wait. Alive, it is waited for, and said.
    engine.capsys.readouterr()
    with Client(engine.paths).connect(timeout=0.001) as client:
        assert client.call("ping")["pong"]
    err = engine.capsys.readouterr().err
    assert err.count("\n") == 1 and "is slow to start; waiting" in err
    with Client(engine.paths).connect(timeout=0.001) as client:  # up: at once, unsaid
        assert client.call("ping")["pong"]
    assert engine.capsys.readouterr().err == ""
