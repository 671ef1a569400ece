"""A worker that waits, warm, in the daemon's pool: torch imported, no run yet.

``python -m engine.run.worker --warm`` is started by a warm shim
(``engine.run.warm_shim``). It imports torch and what every built-in workload
needs, says ``ready`` on stdout (a pipe to its shim) and blocks reading stdin.
The shim then writes one JSON line, ``{"run_dir", "env", "cwd"}``, which the
worker acknowledges (``took``) and takes on that run's environment, working
directory and output files, and from there on is the worker a cold start would
have been. EOF instead (its shim is gone) ends it.

CUDA is never touched while waiting: ``CUDA_VISIBLE_DEVICES`` and the rest of
the run's environment are applied before the workload runs, and torch reads
them only when CUDA is first initialised. What an interpreter or a library
reads once at start (``PYTHON*``, the loader's ``LD_*``, thread pools' ``OMP_*``
...) cannot be applied late: a run whose environment differs there is started
cold by the shim (:func:`startup_env_differs`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

# Read at interpreter or library start, so a warm worker must already have them right.
STARTUP_PREFIXES = (
    "PYTHON", "LD_", "OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "TORCH_", "PYTORCH_",
)
READY = b"ready\n"
# Said back on the pipe it was told on, once a handover line is read: the sender
# then knows that a live process took the run (and did not die just before).
TOOK = b"took\n"


def startup_env_differs(waiting: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """The variables read at start-up whose value differs between two environments."""
    names = {k for k in (*waiting, *wanted) if k.startswith(STARTUP_PREFIXES)}
    return sorted(k for k in names if waiting.get(k) != wanted.get(k))


def wait_for_launch() -> Path | None:
    """Import what a worker needs, say ready, and wait; the run dir handed over, or None."""
    # What every built-in workload and checkpoint needs: the slow part of a cold start.
    import torch  # noqa: F401

    import engine.run.checkpoint
    import engine.run.workloads.charlm
    import engine.run.workloads.synthetic  # noqa: F401

    _first_optimizer_step()
    waited_in = os.getcwd()  # the pool's directory, removed once a run takes us
    os.write(1, READY)
    line = sys.stdin.buffer.readline()
    if not line:
        return None  # the shim is gone (the daemon stopped): nothing to run
    os.write(1, TOOK)
    handover = json.loads(line)
    run_dir = Path(handover["run_dir"])
    _take_output(run_dir)
    _become(run_dir, handover["env"], handover["cwd"], waited_in)
    return run_dir


def _first_optimizer_step() -> None:
    """Step each optimizer the built-in workloads use once, on a throwaway parameter.

    torch's first optimizer imports torch._dynamo and sympy: about as long as
    importing torch itself. Nothing random is drawn, so no run's numbers change.
    """
    import torch

    param = torch.nn.Parameter(torch.zeros(4))
    for make in (torch.optim.SGD, torch.optim.AdamW):
        optimizer = make([param], lr=0.1)
        param.sum().backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _take_output(run_dir: Path) -> None:
    """Write to the run's stdout.log and stderr.log, read nothing, as a cold worker does."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    # Appended like a cold worker's (the shim opens them so); this also closes the
    # ready pipe, which the shim no longer reads.
    for fd, name in ((1, "stdout.log"), (2, "stderr.log")):
        with open(run_dir / name, "ab") as out:
            os.dup2(out.fileno(), fd)


def _become(run_dir: Path, env: dict[str, str], cwd: str, waited_in: str) -> None:
    """Take on the run's environment, working directory and arguments."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    # ``python -m`` put the directory it started in first on sys.path: a cold
    # worker would have the run's directory there.
    if sys.path and sys.path[0] == waited_in:
        sys.path[0] = os.getcwd()
    sys.argv[1:] = [str(run_dir)]
