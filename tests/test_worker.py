"""The real shim and worker processes on a temporary run directory, with no daemon.

The tests play the daemon's part: they write ``launch.json`` and control lines,
nudge the worker with SIGUSR1 and read ``spool.jsonl`` and ``exit.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine.rundir.paths import RunDir, read_json, write_json_atomic
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
FAST = {"steps": 40, "dim": 8, "batch": 16}
SLOW = {"steps": 60, "dim": 8, "batch": 16, "sleep": 0.03}


def launch(run_dir: Path, config: dict[str, Any], *, workload: str = "synthetic",
           generation: int = 1, resume_from: str | None = None) -> subprocess.Popen[bytes]:
    """Write launch.json and start the shim as the daemon would (own session)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = RunDir(run_dir)
    offset = paths.control.stat().st_size if paths.control.exists() else 0
    paths.exit.unlink(missing_ok=True)
    paths.worker.unlink(missing_ok=True)
    write_json_atomic(paths.launch, {
        "run_id": run_dir.name, "name": run_dir.name, "generation": generation,
        "workload": workload, "config": config, "device": "cpu",
        "resume_from": resume_from, "control_offset": offset,
    })
    return subprocess.Popen([sys.executable, "-m", "engine.run.shim", str(run_dir)], cwd=ROOT,
                            start_new_session=True)


def finish(shim: subprocess.Popen[bytes], run_dir: Path) -> dict[str, Any]:
    """Wait for the shim to end; return exit.json."""
    assert shim.wait(timeout=60) == 0
    result = read_json(RunDir(run_dir).exit)
    assert isinstance(result, dict)
    return result


def records(run_dir: Path) -> list[dict[str, Any]]:
    spool = RunDir(run_dir).spool
    if not spool.exists():
        return []
    return [json.loads(line) for line in spool.read_text().splitlines()]


def losses(run_dir: Path, generation: int | None = None) -> dict[int, float]:
    out: dict[int, float] = {}
    for rec in records(run_dir):
        if rec["t"] == "metrics" and generation in (None, rec["gen"]):
            out.update({step: value for step, key, value, _ in rec["points"] if key == "loss"})
    return out


def states(run_dir: Path) -> list[dict[str, Any]]:
    return [r for r in records(run_dir) if r["t"] == "state"]


def send(run_dir: Path, cmd: str, seq: int, request: str | None = None) -> None:
    """Append a control line and nudge the worker, as the daemon does."""
    paths = RunDir(run_dir)
    with open(paths.control, "a", encoding="utf-8") as f:
        f.write(json.dumps({"seq": seq, "cmd": cmd, "request": request}) + "\n")
    worker = wait_until(lambda: read_json(paths.worker))
    os.kill(worker["pid"], signal.SIGUSR1)


def wait_for_step(run_dir: Path, step: int) -> None:
    wait_until(lambda: max(losses(run_dir), default=-1) >= step)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    """Losses of an uninterrupted run with the SLOW config (minus the sleep)."""
    run_dir = tmp_path_factory.mktemp("reference")
    shim = launch(run_dir, {**SLOW, "sleep": 0.0})
    assert finish(shim, run_dir)["returncode"] == 0
    return losses(run_dir)


def test_synthetic_run_finishes(tmp_path: Path) -> None:
    shim = launch(tmp_path, {**FAST, "print_every": 10, "extra_metrics": 3})
    result = finish(shim, tmp_path)
    assert result == {"generation": 1, "returncode": 0, "time": result["time"]}
    assert sorted(losses(tmp_path)) == list(range(40))
    first, *_, last = states(tmp_path)
    assert (first["state"], first["step"], first["total"]) == ("running", 0, 40)
    assert (last["state"], last["step"]) == ("finished", 40)
    assert Path(last["checkpoint"]).name == "final.pt" and Path(last["checkpoint"]).exists()
    worker = read_json(RunDir(tmp_path).worker)
    assert worker["pgid"] == worker["pid"] and worker["generation"] == 1
    assert "step 30 loss" in RunDir(tmp_path).stdout.read_text()
    extra = {k for r in records(tmp_path) if r["t"] == "metrics" for _, k, _, _ in r["points"]}
    assert extra == {"loss", "extra_0", "extra_1", "extra_2"}


def test_failure_records_error_and_traceback(tmp_path: Path) -> None:
    shim = launch(tmp_path, {**FAST, "fail_at": 7})
    assert finish(shim, tmp_path)["returncode"] == 1
    errors = [r for r in records(tmp_path) if r["t"] == "error"]
    assert [e["message"] for e in errors] == ["RuntimeError: synthetic failure at step 7"]
    assert sorted(losses(tmp_path)) == list(range(7))  # flushed before the error
    stderr = RunDir(tmp_path).stderr.read_text()
    assert "Traceback" in stderr and "synthetic failure at step 7" in stderr


def test_pause_holds_then_resume_continues(tmp_path: Path) -> None:
    shim = launch(tmp_path, SLOW)
    wait_for_step(tmp_path, 3)
    send(tmp_path, "pause", 1)
    paused = wait_until(lambda: [s for s in states(tmp_path) if s["state"] == "paused"])[0]
    time.sleep(0.5)
    assert max(losses(tmp_path)) == paused["step"] - 1  # no progress while paused
    send(tmp_path, "checkpoint", 2, request="while-paused")
    answer = wait_until(lambda: [r for r in records(tmp_path) if r["t"] == "checkpoint"])[0]
    assert (answer["request"], answer["step"]) == ("while-paused", paused["step"])
    send(tmp_path, "resume", 3)
    assert finish(shim, tmp_path)["returncode"] == 0
    names = [s["state"] for s in states(tmp_path)]
    assert names == ["running", "paused", "resumed", "finished"]
    assert sorted(losses(tmp_path)) == list(range(60))


def test_release_then_resume_is_bit_exact(tmp_path: Path, reference: dict[int, float]) -> None:
    shim = launch(tmp_path, SLOW)
    wait_for_step(tmp_path, 5)
    send(tmp_path, "release", 1)
    assert finish(shim, tmp_path)["returncode"] == 0
    released = states(tmp_path)[-1]
    assert released["state"] == "released"
    step, checkpoint = released["step"], released["checkpoint"]
    assert 5 < step < 60 and Path(checkpoint).name == f"release-{step}.pt"
    assert losses(tmp_path, generation=1) == {s: reference[s] for s in range(step)}

    shim = launch(tmp_path, SLOW, generation=2, resume_from=checkpoint)
    assert finish(shim, tmp_path)["returncode"] == 0
    resumed = losses(tmp_path, generation=2)
    assert resumed == {s: reference[s] for s in range(step, 60)}  # floats compared with ==
    assert states(tmp_path)[-2]["step"] == step  # gen 2 "running" starts at the release step


def test_fork_from_checkpoint_reproduces_parent(tmp_path: Path) -> None:
    parent_dir, child_dir = tmp_path / "parent", tmp_path / "child"
    parent = launch(parent_dir, SLOW)
    wait_for_step(parent_dir, 5)
    send(parent_dir, "checkpoint", 1, request="fork-1")
    answer = wait_until(lambda: [r for r in records(parent_dir) if r["t"] == "checkpoint"])[0]
    assert answer["request"] == "fork-1"
    child = launch(child_dir, {**SLOW, "sleep": 0.0}, resume_from=answer["path"])
    changed_dir = tmp_path / "changed"
    changed = launch(changed_dir, {**SLOW, "sleep": 0.0, "lr": 0.01}, resume_from=answer["path"])
    assert finish(child, child_dir)["returncode"] == 0
    assert finish(changed, changed_dir)["returncode"] == 0
    assert finish(parent, parent_dir)["returncode"] == 0
    parent_losses = losses(parent_dir)
    step = answer["step"]
    assert losses(child_dir) == {s: parent_losses[s] for s in range(step, 60)}
    # An overridden lr takes effect: same loss at the fork step, different after it.
    changed_losses = losses(changed_dir)
    assert changed_losses[step] == parent_losses[step]
    assert changed_losses[step + 2] != parent_losses[step + 2]


SPAWNER = """
import os, subprocess, time
from pathlib import Path

def train(run):
    group = subprocess.Popen(["sleep", "300"])
    escaped = subprocess.Popen(["sleep", "300"], start_new_session=True)
    pids = [group.pid, escaped.pid]
    for step in run.steps(run.config.get("steps", 1)):
        run.log(loss=float(step))
        if step == 3 and run.config.get("fork"):
            # Like a DataLoader worker: a forked copy that holds unflushed metrics.
            pid = os.fork()
            if pid == 0:
                time.sleep(300)
                os._exit(0)
            pids.append(pid)
        if step == 3 or run.config.get("steps", 1) == 1:
            Path(run.dir, "children").write_text(" ".join(map(str, pids)))
        time.sleep(0.05)
"""


def _children(run_dir: Path) -> list[int]:
    marker = run_dir / "children"
    text = wait_until(lambda: marker.exists() and marker.read_text())
    return [int(pid) for pid in text.split()]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_shim_leaves_no_process_behind(tmp_path: Path) -> None:
    script = tmp_path / "spawner.py"
    script.write_text(SPAWNER)
    run_dir = tmp_path / "run"
    shim = launch(run_dir, {}, workload=f"{script}:train")
    assert finish(shim, run_dir)["returncode"] == 0
    assert all(_gone(pid) for pid in _children(run_dir))


def test_killpg_leaves_no_process_behind(tmp_path: Path) -> None:
    script = tmp_path / "spawner.py"
    script.write_text(SPAWNER)
    run_dir = tmp_path / "run"
    shim = launch(run_dir, {"steps": 1000, "fork": True}, workload=f"{script}:train")
    children = _children(run_dir)
    assert len(children) == 3
    worker = read_json(RunDir(run_dir).worker)
    os.killpg(worker["pgid"], signal.SIGTERM)  # what the daemon's kill does first
    assert finish(shim, run_dir)["returncode"] == 143
    assert all(_gone(pid) for pid in children)
    assert _gone(worker["pid"])
    # The worker flushed on SIGTERM; the forked copy did not write its buffer again.
    steps = [p[0] for r in records(run_dir) if r["t"] == "metrics" for p in r["points"]]
    assert len(steps) == len(set(steps)) and 3 in steps


def test_commands_before_the_worker_starts_are_obeyed_and_old_ones_skipped(
    tmp_path: Path,
) -> None:
    paths = RunDir(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    paths.control.write_text('{"seq":1,"cmd":"release","request":null}\n')  # before the offset
    shim = launch(tmp_path, FAST)
    # No nudge: the worker reads control once when its loop starts.
    with open(paths.control, "a", encoding="utf-8") as f:
        f.write('{"seq":2,"cmd":"checkpoint","request":"early"}\n')
    assert finish(shim, tmp_path)["returncode"] == 0
    answer = [r for r in records(tmp_path) if r["t"] == "checkpoint"]
    assert [(a["request"], a["step"]) for a in answer] == [("early", 0)]
    assert states(tmp_path)[-1]["state"] == "finished"
