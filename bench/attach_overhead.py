"""Does ``run.log`` cost the same attached?  Run: ``.venv/bin/python bench/attach_overhead.py``.

Attach mode (``traintop.init``) hands the script the same ``Run`` class a
level-1 worker gets (a subclass that only adds how the process records its
exit), so a call should cost the same. Measured here side by side, batches
interleaved: the median cost of ``run.log(loss=float)`` and of one
``run.steps`` turn with a ``run.log(loss=tensor)``, for a Run built as the
worker builds it and for one from ``traintop.init`` (offline, on a scratch
state directory, so no daemon is involved).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from log_overhead import make_run, median_ns_per_call  # noqa: E402

from engine.run.run_api import Run  # noqa: E402
from traintop.attach import AttachedRun  # noqa: E402

STEP_REPS = 5
STEPS = 100_000


def attached_run(home: Path) -> Run:
    """A Run from ``traintop.init`` with no daemon: its own run directory, offline."""
    os.environ["TRAINTOP_HOME"] = str(home)
    os.environ["TRAINTOP_NO_AUTOSTART"] = "1"
    import traintop

    return traintop.init(config={"lr": 3e-4}, name="bench")


def ns_per_step(run: Run) -> float:
    loss = torch.tensor(1.0)
    log = run.log
    start = time.perf_counter_ns()
    for _ in run.steps(STEPS):
        log(loss=loss)
    return (time.perf_counter_ns() - start) / STEPS


def main() -> int:
    """Print both measurements and their ratio; always exits 0."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        level1 = make_run(scratch / "level1")
        attached = attached_run(scratch / "home")
        calls: dict[str, list[float]] = {"level 1 (worker)": [], "attached (traintop.init)": []}
        for _ in range(3):  # interleaved, so drift hits both alike
            for what, run in (("level 1 (worker)", level1), ("attached (traintop.init)", attached)):
                log = run.log
                calls[what].append(median_ns_per_call(lambda i, log=log: log(loss=1.0), run.flush))
        for what, values in calls.items():
            print(f"{what:26s} run.log(loss=float): median {statistics.median(values):7.1f} ns")
        steps: dict[str, list[float]] = {"level 1": [], "attached": []}
        for rep in range(STEP_REPS):
            steps["level 1"].append(ns_per_step(make_run(scratch / f"l1-{rep}")))
            # A fresh one per repetition (a finished Run's steps() are done), same class.
            fresh = AttachedRun(attached.dir, {"run_id": attached.id, "generation": 1})
            steps["attached"].append(ns_per_step(fresh))
        for what, values in steps.items():
            print(f"{what:26s} run.steps + run.log(loss=tensor): median "
                  f"{statistics.median(values):7.1f} ns per step")
        a, b = (statistics.median(v) for v in calls.values())
        print(f"attached / level 1, run.log: {b / a:.2f}x (target: 1.0 within noise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
