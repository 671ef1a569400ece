"""Run one generation of one run: ``python -m engine.run.worker RUN_DIR``.

Started by the shim. Reads ``launch.json``, builds the :class:`Run`, seeds the
RNGs (fresh runs only; a resumed run gets its RNG back from the checkpoint)
and calls the workload's ``train(run)``. Exit codes: 0 finished or released,
1 the workload raised, 143 SIGTERM, 2 bad invocation.

``--zygote POOL_DIR`` instead of RUN_DIR: the daemon's warm pool, torch imported once,
forking a worker per run it is handed (``engine.run.warm_worker``); each forked
worker then goes on as above.
"""

from __future__ import annotations

import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from engine.run.run_api import Run
from engine.run.warm_worker import serve_forks
from engine.run.workloads.registry import load_train, workload_defaults
from engine.rundir.paths import RunDir, read_json


def seed_everything(seed: int) -> None:
    """Seed Python's, torch's and (if installed) numpy's global RNGs."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
    except ImportError:
        return
    np.random.seed(seed % 2**32)


def _run(run: Run, launch: dict[str, Any]) -> int:
    try:
        train = load_train(launch["workload"])
        run.startup["imported"] = time.time()
        if run.device.startswith("cuda"):
            import torch

            torch.cuda.init()  # type: ignore[no-untyped-call]  # here, to time it apart
            run.startup["cuda_ready"] = time.time()
        if not launch.get("resume_from"):
            seed_everything(int(dict.get(run.config, "seed", 0)))  # "get" may be a key
        train(run)
        run.mark_finished()
    except SystemExit as exc:
        if exc.code in (0, None):  # the workload chose to stop early: a clean finish
            run.mark_finished()
            return 0
        run.record_error(exc)
        return 1
    except Exception as exc:
        run.record_error(exc)
        traceback.print_exc()
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    started = time.time()
    args = sys.argv[1:] if argv is None else argv
    handover: float | None = None
    if len(args) == 2 and args[0] == "--zygote":
        handed = serve_forks(Path(args[1]).resolve())
        if handed is None:
            return 0  # the daemon is gone: the server ends
        handover = started = time.time()
        args = [str(handed)]
    if len(args) != 1:
        print("usage: python -m engine.run.worker RUN_DIR|--zygote POOL_DIR", file=sys.stderr)
        return 2
    run_dir = RunDir(Path(args[0]).resolve())
    launch = read_json(run_dir.launch)
    if not isinstance(launch, dict):
        print(f"traintop worker: no valid launch.json in {run_dir.path}", file=sys.stderr)
        return 2
    run = Run(run_dir.path, launch, config=_full_config(launch))
    run.startup.update(main=started, warm=handover is not None, handover=handover)
    run.install_signal_handlers()
    code = _run(run, launch)
    # A nudge (SIGUSR1, e.g. a fork's checkpoint request) can still arrive while the
    # interpreter shuts down, and shutdown resets Python handlers to the default
    # action, which kills: a finished run then ended as "killed by signal SIGUSR1".
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    return code


def _full_config(launch: dict[str, Any]) -> dict[str, Any]:
    """The workload's defaults under the launch config, so every key is present."""
    try:
        defaults = workload_defaults(launch["workload"])
    except Exception:
        defaults = {}  # load_train reports the problem as the run's error
    return {**defaults, **(launch.get("config") or {})}


if __name__ == "__main__":
    sys.exit(main())
