"""Fair cores: every live CPU run gets its own share of the cores, whoever started it.

Real scripts that call ``traintop.init`` (started as a user would, from a
plain environment), their forks, a wrapped command and a real daemon. Each
script logs ``torch.get_num_threads()`` at every step, so the thread count the
engine asked for is read from the run's own points; its cores are read with
``os.sched_getaffinity``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from engine.rundir.paths import StatePaths, child_env
from engine.server.backends.wrapped import WrappedBackend
from engine.server.cores import CoreShares, Share, on_cpu, pin, split_cores
from engine.server.live_run import LiveRun
from engine.server.procfs import descendants
from engine.server.store import Store
from tests.conftest import Engine, wait_until

CPUS = sorted(os.sched_getaffinity(0))
needs_two_cores = pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 cores to share")

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    import traintop

    run = traintop.init(config={"steps": 100000}, name=sys.argv[1])
    print("RUN", run.id, flush=True)
    model = torch.nn.Linear(4, 1)
    run.track(model=model)
    for step in run.steps(run.config.steps):
        run.log(threads=torch.get_num_threads())
        time.sleep(0.02)
    """
)
PLAIN = "import time\nwhile True:\n    print('step 1 loss 0.5', flush=True)\n    time.sleep(0.05)\n"


@pytest.fixture
def start_script(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    """Start the script from a shell-like environment (no thread settings); kill at the end."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    started: list[subprocess.Popen[str]] = []

    def start(name: str, cpus: set[int] | None = None,
              **env: str) -> tuple[subprocess.Popen[str], str]:
        environ = {k: v for k, v in child_env(**env).items()
                   if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") or k in env}
        proc = subprocess.Popen(
            [sys.executable, str(script), name], stdout=subprocess.PIPE, text=True,
            cwd=tmp_path, env=environ,
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
        )
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("RUN "), line
        return proc, line.split()[1]

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


# Starts a child from its main thread and one from another thread, which lives on (a
# thread's children are handed to the main thread when it ends); that second child
# starts one of its own. Prints the pids of all three, then waits.
TREE = textwrap.dedent(
    """
    import subprocess, sys, threading, time
    started = [subprocess.Popen(["sleep", "60"])]
    spawned = threading.Event()
    def other():
        started.append(subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"],
                                        stdout=subprocess.PIPE, text=True))
        spawned.set()
        time.sleep(60)
    threading.Thread(target=other, daemon=True).start()
    spawned.wait()
    grandchild = started[1].stdout.readline().strip()
    print(started[0].pid, started[1].pid, grandchild, flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def tree() -> Iterator[tuple[int, list[int]]]:
    """A process with a child of its main thread, one of another thread, and a grandchild."""
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    under = [int(pid) for pid in proc.stdout.readline().split()]
    assert len(under) == 3
    yield proc.pid, under
    os.killpg(proc.pid, 9)
    proc.wait()


def test_pin_reaches_every_descendant_whichever_thread_started_it(
    tree: tuple[int, list[int]],
) -> None:
    root, under = tree
    assert sorted(descendants(root)) == sorted([root, *under])
    pin(root, [CPUS[0]])
    for pid in [root, *under]:
        for tid in os.listdir(f"/proc/{pid}/task"):
            assert os.sched_getaffinity(int(tid)) == {CPUS[0]}, (pid, tid)


class NoControl:
    """The supervisor's side, for runs that take no control commands (wrapped commands)."""

    def send_control(self, run: dict[str, object], cmd: str, request: str | None = None) -> None:
        raise AssertionError("a wrapped command was sent a control command")


@needs_two_cores
def test_shares_left_by_the_time_budget_are_given_at_the_next_tick(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    paths = StatePaths(tmp_path)
    live: dict[str, LiveRun] = {}
    procs = []
    for n in range(2):
        run_id = f"core{n}a"
        store.create_run({"id": run_id, "name": run_id, "workload": "wrapped", "config": {},
                          "state": "running", "device": "cpu", "cwd": "/",
                          "created": time.time(), "released": False}, "created")
        proc = subprocess.Popen(["sleep", "60"])
        procs.append(proc)
        live[run_id] = LiveRun(run_id, paths.run_dir(run_id), 1, 0, WrappedBackend(),
                               pid=proc.pid, pgid=proc.pid,
                               pid_start=psutil.Process(proc.pid).create_time())
    try:
        shares = CoreShares()
        host = NoControl()
        shares.tick(live, store, host, budget=0.0)  # type: ignore[arg-type]
        cores = [os.sched_getaffinity(proc.pid) for proc in procs]
        assert sorted(len(c) for c in cores) == [1, len(CPUS)], "one run at a time"
        shares.tick(live, store, host, budget=0.0)  # type: ignore[arg-type]
        cores = [os.sched_getaffinity(proc.pid) for proc in procs]
        assert [len(c) for c in cores] == [1, 1] and not cores[0] & cores[1], \
            "the second run waited for the next look, not the next tick"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        store.close()


def threads_now(engine: Engine, run_id: str) -> int:
    """The thread count the run's last step ran with (0 before its first point)."""
    points = engine.losses(run_id, "threads")
    return int(points[max(points)]) if points else 0


def pid_of(engine: Engine, run_id: str) -> int:
    run = engine.wait(run_id, lambda r: r["pid"] is not None and r["state"] == "running")
    return int(run["pid"])


def test_split_cores_gives_disjoint_blocks_or_one_thread_each() -> None:
    assert split_cores(["a"], [0, 1]) == {"a": Share((0, 1), 2)}
    assert split_cores(["a", "b"], [0, 1]) == {"a": Share((0,), 1), "b": Share((1,), 1)}
    assert split_cores(["a", "b"], [0, 1, 2]) == {"a": Share((0, 1), 2), "b": Share((2,), 1)}
    # More runs than cores: the kernel shares time among them, one thread each.
    assert split_cores(["a", "b", "c"], [0, 1]) == {r: Share((0, 1), 1) for r in "abc"}


def test_only_runs_placed_on_a_gpu_are_left_out() -> None:
    assert not on_cpu({"device": "cuda:1"})
    # A wrapped command's device is unknown ('-'): it runs on cores all the same.
    assert all(on_cpu({"device": device}) for device in ("cpu", "-", None))


@needs_two_cores
def test_a_fork_and_its_parent_share_the_cores_and_give_them_back(
    engine: Engine, start_script: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    proc, parent = start_script("parent")
    engine.wait_step(parent, 3)
    own = threads_now(engine, parent)
    if own < 2:
        pytest.skip("torch runs one thread here: nothing to share")
    assert os.sched_getaffinity(proc.pid) == set(CPUS)

    assert engine.cli("fork", parent, "--name", "child").code == 0
    child = next(r["id"] for r in engine.all_runs() if r["parent_id"] == parent)
    child_pid = pid_of(engine, child)

    def split() -> bool:
        mine, theirs = os.sched_getaffinity(proc.pid), os.sched_getaffinity(child_pid)
        return (len(mine) == len(theirs) == len(CPUS) // 2 and not mine & theirs
                and threads_now(engine, parent) == threads_now(engine, child) == len(mine))

    wait_until(split, "parent and fork each run on their own half of the cores")

    def parent_alone() -> bool:
        return (os.sched_getaffinity(proc.pid) == set(CPUS)
                and threads_now(engine, parent) == own)

    # A paused run gives its share back, and takes it again when it goes on.
    assert engine.cli("pause", child).code == 0
    wait_until(parent_alone, "the parent has every core while its fork is paused")
    assert engine.cli("resume", child).code == 0
    wait_until(split, "the cores are shared again after the resume")
    assert engine.cli("kill", child).code == 0
    wait_until(parent_alone, "the parent has every core once its fork ended")


@needs_two_cores
def test_a_thread_count_the_user_chose_is_kept(
    engine: Engine, start_script: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    proc, first = start_script("chosen", OMP_NUM_THREADS="2")
    _, second = start_script("other")
    engine.wait_step(first, 3)
    engine.wait_step(second, 3)
    # Its cores are shared like any run's ...
    wait_until(lambda: len(os.sched_getaffinity(proc.pid)) == len(CPUS) // 2,
               "the run with OMP_NUM_THREADS has its share of the cores")
    # ... and the other run got its thread count (it was sent at the same moment) ...
    wait_until(lambda: threads_now(engine, second) == len(CPUS) // 2, "the other shrank")
    # ... but the count its user chose stays, steps after the command came.
    step = int(engine.run(first)["step"])
    engine.wait_step(first, step + 5)
    assert threads_now(engine, first) == 2


@needs_two_cores
def test_a_process_pinned_by_its_user_is_left_alone(
    engine: Engine, start_script: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    pinned_proc, pinned = start_script("pinned", cpus={CPUS[0]})
    proc, parent = start_script("parent")
    engine.wait_step(pinned, 3)
    engine.wait_step(parent, 3)
    assert engine.cli("fork", parent, "--name", "child").code == 0
    child = next(r["id"] for r in engine.all_runs() if r["parent_id"] == parent)
    child_pid = pid_of(engine, child)
    # The two runs the engine shares the cores between: disjoint halves ...
    wait_until(lambda: not os.sched_getaffinity(proc.pid) & os.sched_getaffinity(child_pid)
               and len(os.sched_getaffinity(proc.pid)) == len(CPUS) // 2,
               "parent and fork each have their own cores")
    # ... while the run pinned by its user keeps the one core it chose.
    assert os.sched_getaffinity(pinned_proc.pid) == {CPUS[0]}
    assert int(engine.run(pinned)["step"]) > 3 and engine.run(pinned)["state"] == "running"


@needs_two_cores
def test_a_wrapped_command_gets_cores_but_no_control_nudge(
    engine: Engine, tmp_path: Path,
    start_script: Callable[..., tuple[subprocess.Popen[str], str]],
) -> None:
    plain = tmp_path / "plain.py"
    plain.write_text(PLAIN)
    proc, attached = start_script("attached")
    # --gpus 0: on a GPU machine a wrapped command takes a GPU by default, and runs
    # placed on a GPU are left out of the shares.
    result = engine.cli("run", "--json", "--name", "wrapped", "--gpus", "0",
                        "--", sys.executable, str(plain))
    assert result.code == 0, result.err
    wrapped = result.json()["id"]
    wrapped_pid = pid_of(engine, wrapped)
    wait_until(lambda: not os.sched_getaffinity(proc.pid) & os.sched_getaffinity(wrapped_pid)
               and len(os.sched_getaffinity(wrapped_pid)) == len(CPUS) // 2,
               "the wrapped command and the script each have their own cores")
    wait_until(lambda: threads_now(engine, attached) == len(CPUS) // 2, "the script shrank")
    # SIGUSR1 (the control nudge) would have ended a program that does not expect it.
    assert engine.run(wrapped)["state"] == "running"
