"""A worker SIGKILLed in the middle of a checkpoint: the run goes on from its last whole one.

The write is caught in the middle without a hook in the code: the test puts a
FIFO where the worker will write its temporary file, so the worker blocks in
``write()`` once the pipe is full, with part of the checkpoint written.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

from tests.conftest import TERMINAL, Engine

STEPS = 150
# A wide input layer makes a checkpoint of megabytes: more than a pipe holds. At the
# default lr its loss blows up to inf and NaN within 25 steps; that is no concern
# here, so the divergence watch is off (its forks inherit that).
BIG = ("dim=2048", "sleep=0.01", "--no-divergence-pause")


def _start(engine: Engine, *argv: str) -> str:
    result = engine.cli("start", *argv, "--json")
    assert result.code == 0, result.err
    run_id: str = result.json()["id"]
    return run_id


def _kill_in_release(engine: Engine, run_id: str) -> int:
    """Pause, then SIGKILL the worker while it writes ``release-N.pt``; returns N."""
    assert engine.cli("pause", run_id).code == 0
    run = engine.wait_state(run_id, "paused")
    step, pid, pgid = run["step"], run["pid"], run["pgid"]
    checkpoints = engine.paths.run_dir(run_id).checkpoints
    fifo = checkpoints / f".release-{step}.pt.{pid}.tmp"  # the name checkpoint.py writes to
    os.mkfifo(fifo)
    engine.call("pause", run=run_id, release=True)
    with open(fifo, "rb") as pipe:  # opens once the worker opens it to write
        assert len(pipe.read(4096)) == 4096  # the checkpoint is being written...
        time.sleep(0.2)
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # ...and still is
        os.killpg(pgid, signal.SIGKILL)
    return int(step)


def test_a_run_killed_in_a_checkpoint_resumes_and_forks_from_its_last_whole_one(
    engine: Engine,
) -> None:
    run_id = _start(engine, "synthetic", f"steps={STEPS}", *BIG)
    engine.wait_step(run_id, 20)
    assert engine.cli("pause", run_id, "--release").code == 0
    whole = engine.run(run_id)["step"]  # release-<whole>.pt is written and intact
    assert engine.cli("resume", run_id).code == 0
    engine.wait_step(run_id, whole + 15)
    cut = _kill_in_release(engine, run_id)
    assert cut > whole

    failed = engine.wait_state(run_id, *TERMINAL)
    assert failed["state"] == "failed"
    assert failed["resume_point"]["step"] == whole
    shown = engine.cli("show", run_id).out
    assert f"resume    from step {whole}, its last complete checkpoint" in shown

    forked = engine.cli("fork", run_id, "--json")
    assert forked.code == 0, forked.err
    child = forked.json()
    assert child["parent_id"] == run_id and child["fork_step"] == whole

    resumed = engine.cli("resume", run_id)
    assert resumed.code == 0, resumed.err
    assert f"from its last complete checkpoint, at step {whole}" in resumed.out
    for ref in (run_id, child["id"]):
        assert engine.wait_state(ref, *TERMINAL, timeout=120)["state"] == "finished"

    # Both went on from step `whole` exactly: the steps run twice have the same losses.
    with engine.client() as client:
        points = client.all_metrics(run_id, "loss")
    by_step: dict[int, set[float]] = {}
    for step, _key, value, _when in points:
        by_step.setdefault(int(step), set()).add(value)
    assert sorted(by_step) == list(range(STEPS))
    assert all(len(values) == 1 for values in by_step.values())
    child_losses = engine.losses(child["id"])
    assert min(child_losses) == whole
    assert child_losses == {s: v.pop() for s, v in by_step.items() if s >= whole}


def test_temporaries_of_dead_writers_go_when_the_daemon_starts(engine: Engine) -> None:
    rundir = engine.paths.run_dir("k7m2pq")  # what a run killed in a checkpoint leaves
    rundir.checkpoints.mkdir(parents=True)
    dead = psutil.Popen(["true"])
    dead.wait()
    stray = [
        rundir.checkpoints / f".release-7.pt.{dead.pid}.tmp",
        rundir.path / f".launch.json.{dead.pid}.tmp",
    ]
    in_use = rundir.checkpoints / f".step-9.pt.{os.getpid()}.tmp"  # its writer is alive
    kept = [rundir.checkpoints / "release-3.pt", rundir.stdout, in_use]
    for path in (*stray, *kept):
        path.write_bytes(b"some bytes")
    assert engine.cli("engine", "start").code == 0  # a daemon adopts runs as it starts
    assert not any(path.exists() for path in stray)
    assert all(path.exists() for path in kept)
