"""A shim that waits, with its warm worker, for a run: ``python -m engine.run.warm_shim DIR``.

Started by the daemon's warm pool (``engine.server.warm_pool``) in its own
session, with a pipe from the daemon as stdin and one back to it as stdout. It
starts a warm worker (``python -m engine.run.worker --warm``) in its own process
group, the way ``engine.run.shim`` starts a cold one, and once that worker has
imported torch it writes ``ready.json`` in DIR. Then it waits for one of two
things:

- a line on stdin, the run directory whose launch.json is written: it says
  ``took`` on stdout, and from then on it is that run's shim, exactly as
  ``engine.run.shim`` (worker.json, waiting, exit.json), and it no longer depends
  on the daemon;
- EOF on stdin (the daemon stopped or died) or its worker's end: it kills the
  worker's group and exits, so a pool never outlives its daemon.

If the warm worker cannot serve the run (it died meanwhile, or the run's
environment differs in what is read at start-up), the shim starts a cold worker
instead: a launch never fails for the pool's sake.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from engine.run.shim import become_shim, follow, record_failed_start, start_worker, worker_env
from engine.run.warm_worker import READY, TOOK, startup_env_differs
from engine.rundir.paths import RunDir, read_json, write_json_atomic


def _start_warm(pool: Path) -> subprocess.Popen[bytes]:
    with open(pool / "worker.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "engine.run.worker", "--warm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=pool,
            env=worker_env({}),  # this shim's own, as the daemon started it
            process_group=0,
        )


def _end(worker: subprocess.Popen[bytes]) -> None:
    """Kill the warm worker's group and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def _handed_run(worker: subprocess.Popen[bytes]) -> RunDir | None:
    """Wait for the daemon's line (a run dir); None on EOF or when the worker ends first."""
    assert worker.stdout is not None
    stdin = sys.stdin.buffer
    while True:
        readable, _, _ = select.select([stdin, worker.stdout], [], [])
        if stdin in readable:
            line = stdin.readline().strip()
            if not line:
                return None
            os.write(1, TOOK)  # the daemon waits for this before it counts on us
            return RunDir(Path(line.decode()))
        if not worker.stdout.read(1):
            return None  # the worker ended (killed, out of memory): the pool replaces us


def _redirect_own_output(run_dir: RunDir) -> None:
    """From here on, say what this shim says in the run's shim.log, as a cold shim does."""
    with open(run_dir.path / "shim.log", "ab") as log:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
    with contextlib.suppress(OSError):
        os.chdir(run_dir.path)


def _hand_over(worker: subprocess.Popen[bytes], run_dir: RunDir, launch: dict[str, Any]) -> bool:
    """Give the run to the warm worker; False if it cannot take it (start a cold one)."""
    env = worker_env(launch)
    differs = startup_env_differs(worker_env({}), env)
    if differs:
        print(f"traintop shim: started cold: the run sets {', '.join(differs)}", file=sys.stderr)
        return False
    if launch.get("command") or launch.get("argv") or worker.poll() is not None:
        return False
    line = json.dumps({"run_dir": str(run_dir.path), "env": env,
                       "cwd": launch.get("cwd") or str(run_dir.path)})
    stdin: IO[bytes] | None = worker.stdin
    assert stdin is not None
    try:
        stdin.write(line.encode() + b"\n")
        stdin.close()
    except OSError:
        return False  # it died just now
    assert worker.stdout is not None
    # EOF instead: it was dying when the line went (a SIGKILL not yet delivered).
    return worker.stdout.readline() == TOOK


def serve(pool: Path) -> int:
    """Keep a warm worker until the daemon hands over a run, then supervise it."""
    worker = _start_warm(pool)
    assert worker.stdout is not None
    if worker.stdout.readline() != READY:
        _end(worker)
        return 1  # could not import: its worker.log says why
    try:
        write_json_atomic(pool / "ready.json", {"pid": worker.pid, "shim_pid": os.getpid()})
    except OSError:  # the daemon removed the directory: this pool was given up
        _end(worker)
        return 1
    run_dir = _handed_run(worker)
    if run_dir is None:
        _end(worker)
        return 0
    _redirect_own_output(run_dir)
    launch = read_json(run_dir.launch)
    generation = launch.get("generation") if isinstance(launch, dict) else None
    if not isinstance(launch, dict):
        _end(worker)
        record_failed_start(run_dir, generation, f"no valid launch.json in {run_dir.path}")
        return 0
    if _hand_over(worker, run_dir, launch):
        follow(run_dir, generation, worker, warm=True)
        return 0
    _end(worker)
    try:
        proc = start_worker(run_dir, launch)
    except OSError as exc:
        record_failed_start(run_dir, generation, f"cannot start the worker: {exc}")
        return 0
    follow(run_dir, generation, proc)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: the same signal dispositions as a shim, then wait for a run."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m engine.run.warm_shim POOL_DIR", file=sys.stderr)
        return 2
    become_shim()
    return serve(Path(args[0]).resolve())


if __name__ == "__main__":
    sys.exit(main())
