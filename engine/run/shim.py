"""Per-run supervisor: ``python -m engine.run.shim RUN_DIR`` (started detached by the daemon).

Like containerd-shim or conmon, it outlives any daemon restart: it starts the
worker (or, for ``traintop run``, the user's command: see ``engine.run.wrapped``)
in its own process group with output appended to ``stdout.log`` and
``stderr.log``, records the worker's pid in ``worker.json``, waits, kills
whatever the worker left behind, then records the exit in ``exit.json``.
Exit status of the shim itself is 0; the worker's is in ``exit.json``
(negative: killed by that signal; 127: the worker could not be started).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from engine.run.thread_share import sleeping_waits
from engine.run.wrapped import WrappedCommand
from engine.rundir.disk_space import when_room
from engine.rundir.paths import RUN_DIR_ENV, RunDir, child_env, read_json, write_json_atomic

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    """Adopt orphaned descendants (Linux), so a child that left the group is still ours."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def worker_env(launch: dict[str, Any]) -> dict[str, str]:
    """The run's own environment (launch.json), else the daemon's; plus what a worker needs."""
    base = launch.get("env")
    return sleeping_waits(child_env(base if isinstance(base, dict) else None,
                                    PYTHONUNBUFFERED="1"))


def _wait_for(pid: int) -> int:
    """Wait for ``pid``, reaping adopted orphans meanwhile; returns a Popen-style code."""
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            return -signal.SIGKILL  # someone else reaped it; should not happen
        if done == pid:
            return os.waitstatus_to_exitcode(status)


def _kill_leftovers(pgid: int) -> None:
    """SIGKILL the worker's process group and every remaining descendant, then reap them."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    leftovers = psutil.Process().children(recursive=True)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=5)
    # Group members that were not our descendants are reaped by init; wait briefly
    # so that once exit.json exists, the group is really gone.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.01)


def start_worker(run_dir: RunDir, launch: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start the worker (or a ``traintop.init`` script) of ``launch`` in its own group."""
    cwd = launch.get("cwd") or str(run_dir.path)
    env = worker_env(launch)
    command = [sys.executable, "-m", "engine.run.worker", str(run_dir.path)]
    if launch.get("argv"):  # a traintop.init script, re-run as it was started (see attach.py)
        command = [str(a) for a in launch["argv"]]
        env[RUN_DIR_ENV] = str(run_dir.path)
    with open(run_dir.stdout, "ab") as out, open(run_dir.stderr, "ab") as err:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            env=env,
            process_group=0,
        )


def supervise(run_dir: RunDir) -> None:
    """Run one generation of the worker (or wrapped command) and record how it ended."""
    launch = read_json(run_dir.launch)
    generation = generation_of(launch)
    wrapped: WrappedCommand | None = None
    try:
        if not isinstance(launch, dict):
            raise OSError(f"no valid launch.json in {run_dir.path}")
        if launch.get("command"):
            wrapped = WrappedCommand(run_dir, launch)
            proc = wrapped.proc
        else:
            proc = start_worker(run_dir, launch)
    except OSError as exc:
        what = "the command" if isinstance(launch, dict) and launch.get("command") else "the worker"
        record_failed_start(run_dir, generation, f"cannot start {what}: {exc}")
        return
    proc.returncode = follow(run_dir, generation, proc.pid, wrapped)  # reaped by us


def generation_of(launch: object) -> object:
    """The generation a launch.json (as read) names; None for one that is not readable."""
    return launch.get("generation") if isinstance(launch, dict) else None


def fail_launch(run_dir: RunDir, message: str) -> None:
    """``record_failed_start`` for the generation the run's launch.json names."""
    record_failed_start(run_dir, generation_of(read_json(run_dir.launch)), message)


def record_failed_start(run_dir: RunDir, generation: object, message: str) -> None:
    """Say why no worker could start (stderr.log) and end the generation with 127."""
    with open(run_dir.stderr, "a", encoding="utf-8") as err:
        print(f"traintop shim: {message}", file=err)
    write_json_atomic(
        run_dir.exit, {"generation": generation, "returncode": 127, "time": time.time()}
    )


def follow(
    run_dir: RunDir,
    generation: object,
    pid: int,
    wrapped: WrappedCommand | None = None,
    warm: bool = False,
) -> int:
    """Record the started worker (our child ``pid``, leader of its group) in worker.json,
    wait for it, clean up, write exit.json; returns its exit code.

    ``warm``: the worker was forked by the daemon's warm pool (said in worker.json).
    """
    # The worker is our unreaped child until _wait_for, so even a worker that
    # already died still has a readable create_time.
    worker = {
        "pid": pid,
        "pgid": pid,
        "create_time": psutil.Process(pid).create_time(),
        "shim_pid": os.getpid(),
        "generation": generation,
        "warm": warm,
    }
    # On a full disk these two wait for room: without them the daemon could neither
    # follow the worker nor learn how it ended, and would call the run lost.
    when_room(lambda: write_json_atomic(run_dir.worker, worker))
    returncode = _wait_for(pid)
    if wrapped is not None:
        wrapped.proc.returncode = returncode  # reaped by us, not by Popen
    _kill_leftovers(pid)
    if wrapped is not None:
        wrapped.close()  # every line and point is on disk before exit.json
    ending = {"generation": generation, "returncode": returncode, "time": time.time()}
    when_room(lambda: write_json_atomic(run_dir.exit, ending))
    return returncode


def become_shim() -> None:
    """Ignore terminal and stray signals and adopt orphans, as every shim does."""
    # SIGUSR1 ignored too: the worker inherits "ignore" until it installs its
    # handler, so an early nudge cannot kill it.
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    _become_subreaper()


def adopt(run_dir: RunDir, pid: int) -> None:
    """Supervise a worker forked by the warm pool's server before it exec'd this shim
    (``--adopt PID``: the worker is already our child)."""
    follow(run_dir, generation_of(read_json(run_dir.launch)), pid, warm=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ignore terminal and stray signals, then supervise one worker."""
    args = sys.argv[1:] if argv is None else argv
    adopted = len(args) == 3 and args[0] == "--adopt" and args[1].isdigit()
    if len(args) != 1 and not adopted:
        print("usage: python -m engine.run.shim [--adopt PID] RUN_DIR", file=sys.stderr)
        return 2
    become_shim()
    run_dir = RunDir(Path(args[-1]).resolve())
    if adopted:
        adopt(run_dir, int(args[1]))
    else:
        supervise(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
