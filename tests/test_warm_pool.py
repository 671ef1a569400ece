"""The warm pool: a fork server with torch imported serves every start, fork or resume.

Real daemon, real fork server, shims and workers. What is asserted is what a person
could check by hand: that the run's worker was forked warm, what environment and
directory it sees, that the same server serves the next launch, and that the losses
are the ones a cold start gives.
"""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Collection
from pathlib import Path

import psutil
import pytest

from engine.rundir.paths import read_json
from tests.conftest import TERMINAL, Engine, wait_until
from tests.test_engine import SLOW, start


def waiting_worker(engine: Engine, not_in: Collection[int] = ()) -> int:
    """The pid of the pool's fork server (once it has imported torch), not one of ``not_in``."""

    def ready() -> int | None:
        for path in engine.paths.warm.glob("*/ready.json"):
            info = read_json(path)
            if isinstance(info, dict) and info["pid"] not in not_in:
                return int(info["pid"])
        return None

    pid: int = wait_until(ready, "the fork server is ready", timeout=90)
    return pid


def worker_of(engine: Engine, run_id: str, generation: int = 1) -> dict[str, object]:
    """The run's worker.json once its shim has written it for ``generation``."""
    path = engine.paths.run_dir(run_id).worker

    def written() -> dict[str, object] | None:
        info = read_json(path)
        return info if isinstance(info, dict) and info["generation"] == generation else None

    info: dict[str, object] = wait_until(written, f"run {run_id} has its worker")
    return info


def test_a_fork_and_a_resume_after_release_are_served_by_the_warm_worker(engine: Engine) -> None:
    parent = start(engine, "synthetic", "steps=800", *SLOW)
    # The first start starts the pool, and waits for it rather than import torch beside it.
    assert worker_of(engine, parent)["warm"] is True
    first = waiting_worker(engine)
    engine.wait_step(parent, 25)

    child = engine.cli("fork", parent, "--json").json()
    served = worker_of(engine, child["id"])
    assert served["warm"] is True and served["pid"] != first  # a fork of the server

    engine.wait_step(child["id"], child["fork_step"] + 5)
    assert engine.cli("pause", child["id"], "--release").code == 0
    assert engine.cli("resume", child["id"]).code == 0
    resumed = worker_of(engine, child["id"], generation=2)
    assert resumed["warm"] is True and resumed["pid"] not in (first, served["pid"])
    assert waiting_worker(engine) == first  # one server served both, and still waits

    for run_id in (parent, child["id"]):
        assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    # Bit for bit what the cold parent computed, across the fork and the resume.
    parent_losses, child_losses = engine.losses(parent), engine.losses(child["id"])
    assert min(child_losses) == child["fork_step"] and max(child_losses) == 799
    assert child_losses == {s: v for s, v in parent_losses.items() if s >= child["fork_step"]}
    startup = read_json(engine.paths.run_dir(child["id"]).startup)
    assert startup["warm"] is True and startup["generation"] == 2
    assert startup["handover"] <= startup["first_step"]


PROBE = textwrap.dedent(
    """
    import os, sys
    import torch

    def train(run):
        print("CUDA", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
        print("PROBE", os.environ.get("TRAINTOP_PROBE"), flush=True)
        print("CWD", os.getcwd(), flush=True)
        print("PATH0", sys.path[0], flush=True)
        print("ARGV", sys.argv[1], flush=True)
        print("CUDA_INIT", torch.cuda.is_initialized(), flush=True)
        print("STDIN", repr(sys.stdin.read()), flush=True)
        for step in run.steps(3):
            run.log(loss=float(step))
    """
)


def test_a_started_run_gets_its_own_env_cwd_and_output_from_the_warm_worker(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(engine, "synthetic", "steps=3", "--device", "cpu")  # starts the engine and the pool
    pid = waiting_worker(engine)
    # Set only now: the daemon, and so the pool, never had these.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("TRAINTOP_PROBE", "the run's own")
    work = tmp_path / "work"
    work.mkdir()
    (work / "probe.py").write_text(PROBE)
    monkeypatch.chdir(work)
    probe = start(engine, "probe.py", "--device", "cpu")
    assert worker_of(engine, probe)["warm"] is True
    assert waiting_worker(engine) == pid
    assert engine.wait_state(probe, *TERMINAL)["state"] == "finished"
    rundir = engine.paths.run_dir(probe)
    lines = dict(line.split(" ", 1) for line in rundir.stdout.read_text().splitlines())
    assert lines == {
        "CUDA": "3",
        "PROBE": "the run's own",
        "CWD": str(work),
        "PATH0": str(work),
        "ARGV": str(rundir.path),
        "CUDA_INIT": "False",
        "STDIN": "''",
    }


def test_a_warm_start_computes_what_a_cold_start_does(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINTOP_WARM_POOL", "0")
    cold = start(engine, "synthetic", "steps=80", "seed=5")
    assert engine.wait_state(cold, *TERMINAL)["state"] == "finished"
    assert engine.cli("engine", "stop").code == 0
    monkeypatch.setenv("TRAINTOP_WARM_POOL", "1")
    warm = start(engine, "synthetic", "steps=80", "seed=5")  # a new daemon, with a pool
    assert (worker_of(engine, cold)["warm"], worker_of(engine, warm)["warm"]) == (False, True)
    for run_id in (cold, warm):
        assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    assert engine.losses(warm) == engine.losses(cold)
    assert len(engine.losses(cold)) == 80


def test_the_pool_is_never_a_run(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=3000", *SLOW)
    pid = waiting_worker(engine)
    engine.wait_step(run_id, 5)
    assert [r["id"] for r in engine.cli("ls", "--json").json()] == [run_id]
    assert engine.run(run_id)["pid"] != pid
    top = engine.cli("top", "--json").json()
    assert set(top["runs"]) <= {run_id}
    queues = engine.cli("queue", "--json").json()
    assert sum(q["running"] for q in queues) == 1
    assert engine.cli("kill", run_id).code == 0


def test_turned_off_every_run_starts_cold(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINTOP_WARM_POOL", "0")
    first = start(engine, "synthetic", "steps=20")
    assert engine.wait_state(first, *TERMINAL)["state"] == "finished"
    second = start(engine, "synthetic", "steps=20")
    assert engine.wait_state(second, *TERMINAL)["state"] == "finished"
    for run_id in (first, second):
        assert worker_of(engine, run_id)["warm"] is False
    assert not list(engine.paths.warm.glob("*"))
    assert "warm pool: off (TRAINTOP_WARM_POOL=0)" in engine.cli("engine", "status").out


def test_a_run_that_sets_what_python_reads_at_start_is_started_cold(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(engine, "synthetic", "steps=3")
    waiting_worker(engine)
    monkeypatch.setenv("PYTHONHASHSEED", "123")  # too late for a waiting interpreter
    run_id = start(engine, "synthetic", "steps=3")
    assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    worker = worker_of(engine, run_id)
    assert worker["warm"] is False
    assert "PYTHONHASHSEED" in (engine.paths.run_dir(run_id).path / "shim.log").read_text()


def test_runs_started_together_are_all_forked_warm_and_end_as_cold_ones_would(
    engine: Engine,
) -> None:
    start(engine, "synthetic", "steps=3")
    server = waiting_worker(engine)
    assert engine.cli("queue", "wide", "--parallel", "4").code == 0
    made = engine.cli("sweep", "synthetic", "seed=1,2", "fail_at=15,-1", "steps=40",
                      "sleep=0.01", "--queue", "wide", "--json")
    assert made.code == 0, made.err
    runs = [r["id"] for r in made.json()]
    workers = [worker_of(engine, run_id) for run_id in runs]
    assert [w["warm"] for w in workers] == [True] * 4  # not only the first of a burst
    assert len({w["pid"] for w in workers} | {server}) == 5
    ended = {run_id: engine.wait_state(run_id, *TERMINAL) for run_id in runs}
    for run_id, run in ended.items():
        fails = run["config"]["fail_at"] == 15
        assert (run["state"], run["exit_code"]) == (("failed", 1) if fails else ("finished", 0))
        assert max(engine.losses(run_id)) == (14 if fails else 39)
    assert "synthetic failure at step 15" in engine.cli("show", runs[0]).out
    pool = engine.cli("engine", "status", "--json").json()["warm_pool"]
    assert (pool["state"], pool["pid"], pool["forked"], pool["cold"]) == ("ready", server, 5, 0)
    assert f"warm pool: ready (pid {server}); 5 runs forked, 0 started cold" in engine.cli(
        "engine", "status").out

    long_run = start(engine, "synthetic", "steps=100000", "sleep=0.01")
    worker = worker_of(engine, long_run)
    assert worker["warm"] is True
    engine.wait_step(long_run, 5)
    # It shows in ps, htop or nvitop as a cold worker would: with its run's directory.
    shown = [a for a in psutil.Process(int(str(worker["pid"]))).cmdline() if a]
    assert shown[1:] == ["-m", "engine.run.worker", str(engine.paths.run_dir(long_run).path)]
    assert engine.cli("kill", long_run).code == 0
    assert engine.wait_state(long_run, *TERMINAL)["state"] == "killed"
    with pytest.raises(ProcessLookupError):  # its whole group is gone
        os.killpg(int(str(worker["pgid"])), 0)
    assert waiting_worker(engine) == server


def test_the_server_leaves_to_a_cold_start_what_a_fork_of_it_could_not_run(
    tmp_path: Path,
) -> None:
    from engine.run.shim import worker_env
    from engine.run.warm_worker import NVML_CHECK, _handover
    from engine.rundir.paths import write_json_atomic

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    waiting = {**worker_env({}), NVML_CHECK: "1"}  # the server's own, as the daemon made it

    def handover(cuda_forks: bool = True, **launch: object) -> dict[str, object] | None:
        write_json_atomic(run_dir / "launch.json", {"workload": "synthetic", "device": "cpu",
                                                    "cwd": str(tmp_path), **launch})
        return _handover(run_dir, waiting, cuda_forks)

    served = handover()
    assert served is not None and served["cwd"] == str(tmp_path)
    assert handover(device="cuda:0") is not None  # CUDA survives a fork of this server
    assert handover(cuda_forks=False, device="cuda:0") is None
    assert handover(cuda_forks=False) is not None  # a CPU run does not care
    assert handover(command=["echo", "hi"]) is None  # a wrapped command: its own shim
    assert handover(argv=["python", "train.py"]) is None  # an attached script, re-run
    assert handover(env={**waiting, "PYTHONHASHSEED": "7"}) is None
    assert "PYTHONHASHSEED" in (run_dir / "shim.log").read_text()
    assert handover(env={k: v for k, v in waiting.items() if k != NVML_CHECK}) is not None


def server_pid(engine: Engine) -> int | None:
    """The pool's server, from its command line (ready or not)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "--zygote" in cmdline and str(engine.paths.warm) in cmdline:
            return int(proc.pid)
    return None


def test_the_first_runs_of_a_daemon_wait_for_its_pool_or_start_cold_if_it_dies(
    engine: Engine,
) -> None:
    made = engine.cli("sweep", "synthetic", "seed=1,2,3", "steps=30", "--json")
    assert made.code == 0, made.err
    runs = [r["id"] for r in made.json()]
    # None imported torch beside the server: all forked by it once it was ready.
    assert [worker_of(engine, r)["warm"] for r in runs] == [True] * 3
    for run_id in runs:
        assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    assert engine.cli("engine", "stop").code == 0

    # A server that dies while importing: the runs waiting for it start cold.
    first = engine.cli("start", "synthetic", "steps=30", "--no-wait", "--json").json()["id"]
    server = wait_until(lambda: server_pid(engine), "the pool's server starts")
    os.kill(server, signal.SIGKILL)
    assert engine.wait_state(first, *TERMINAL)["state"] == "finished"
    assert worker_of(engine, first)["warm"] is False
    assert len(engine.losses(first)) == 30
    pool = engine.cli("engine", "status", "--json").json()["warm_pool"]
    assert (pool["forked"], pool["cold"]) == (0, 1)
