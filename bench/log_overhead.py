"""How much does ``run.log`` cost?  Run: ``.venv/bin/python bench/log_overhead.py``.

(a) Median cost of one ``run.log(loss=float)`` call, against tensorboardX's
    ``SummaryWriter.add_scalar`` measured the same way in the same process.
(b) Slowdown of a tiny CPU training loop driven by ``run.steps`` with a
    ``run.log`` every step (of ``loss.detach()``, then of a plain float), against
    a plain ``range`` loop with no logging; repetitions interleaved so drift hits
    both sides alike. Also the per-step cost of ``run.steps`` + ``run.log`` alone.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.run.run_api import Run  # noqa: E402

BATCH_CALLS = 1000
BATCHES = 300
TRAIN_STEPS = 2000
TRAIN_REPS = 15


def make_run(run_dir: Path) -> Run:
    """A Run on a scratch directory, as the worker would build it."""
    launch = {"run_id": "bench", "name": "bench", "generation": 1, "workload": "synthetic",
              "config": {}, "device": "cpu", "resume_from": None, "control_offset": 0}
    run_dir.mkdir(parents=True, exist_ok=True)
    return Run(run_dir, launch)


def median_ns_per_call(call: Callable[[int], None], between: Callable[[], None]) -> float:
    """Median over batches of the time per call, in nanoseconds."""
    per_call: list[float] = []
    for batch in range(BATCHES):
        start = time.perf_counter_ns()
        for i in range(BATCH_CALLS):
            call(i)
        per_call.append((time.perf_counter_ns() - start) / BATCH_CALLS)
        if batch % 10 == 9:
            between()  # flushing is not part of a call; it happens at step boundaries
    return statistics.median(per_call)


def bench_log_call(scratch: Path) -> tuple[float, float]:
    """(ours, tensorboardX) median ns per call of logging one float."""
    from tensorboardX import SummaryWriter

    run = make_run(scratch / "run")
    log = run.log
    ours = median_ns_per_call(lambda i: log(loss=1.0), run.flush)
    writer = SummaryWriter(str(scratch / "tb"))
    add = writer.add_scalar
    theirs = median_ns_per_call(lambda i: add("loss", 1.0, i), writer.flush)
    writer.close()
    return ours, theirs


# (hidden width, batch, steps): the "small" loop is the target (an MLP step of about a
# millisecond); the "tiny" one (~0.2 ms a step) shows the worst case.
LOOPS = {"small": (512, 256, 500), "tiny": (64, 64, TRAIN_STEPS)}


def train_loop(run: Run | None, as_tensor: bool = True, size: str = "tiny") -> float:
    """CPU seconds for the steps of an MLP, logged through ``run`` if given."""
    hidden, batch, n_steps = LOOPS[size]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, 32), torch.randn(batch, 1)
    steps = range(n_steps) if run is None else run.steps(n_steps)
    # CPU time of this process: on a shared VM, wall time mostly measures the neighbours.
    start = time.process_time()
    for _ in steps:
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        if run is not None:
            # A float stands for a metric that is already a number (no tensor work).
            run.log(loss=loss.detach() if as_tensor else 1.0)
    return time.process_time() - start


def bench_training(scratch: Path, as_tensor: bool, size: str) -> tuple[float, float, float]:
    """(median logged/plain ratio over adjacent pairs, min logged s, min plain s)."""
    # One thread: ops this small gain nothing from more, and spinning OpenMP
    # threads make the timing hostage to whatever else the machine runs.
    torch.set_num_threads(1)
    train_loop(None, size=size)  # warm up allocator and kernels
    logged, plain, ratios = [], [], []
    for rep in range(TRAIN_REPS):
        # Alternate which goes first, so a slow patch of the machine is shared.
        run_dir = scratch / f"train-{size}-{as_tensor}-{rep}"
        if rep % 2:
            p = train_loop(None, size=size)
            lg = train_loop(make_run(run_dir), as_tensor, size)
        else:
            lg = train_loop(make_run(run_dir), as_tensor, size)
            p = train_loop(None, size=size)
        logged.append(lg)
        plain.append(p)
        ratios.append(lg / p)
    return statistics.median(ratios), min(logged), min(plain)


def bench_step_overhead(scratch: Path) -> float:
    """Nanoseconds per step of ``run.steps`` + ``run.log(loss=tensor)`` alone, flushes included."""
    loss = torch.tensor(1.0)
    per_step: list[float] = []
    for rep in range(5):
        run = make_run(scratch / f"steps-{rep}")
        log = run.log
        start = time.perf_counter_ns()
        for _ in run.steps(200_000):
            log(loss=loss)
        per_step.append((time.perf_counter_ns() - start) / 200_000)
    return statistics.median(per_step)


def main() -> int:
    """Print the measurements; always exits 0 (targets are reported, not asserted)."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        ours, theirs = bench_log_call(scratch)
        print(f"run.log(loss=float):        median {ours:8.1f} ns per call")
        print(f"tensorboardX add_scalar:    median {theirs:8.1f} ns per call")
        print(f"tensorboardX / run.log:     {theirs / ours:8.1f}x  (target >= 10x, ours < 2000 ns)")
        overhead = bench_step_overhead(scratch)
        print(f"run.steps + run.log(loss=tensor), no training: {overhead:8.1f} ns per step "
              "(flushes included)")
        for size in LOOPS:
            for as_tensor, what in ((True, "loss.detach()"), (False, "a float")):
                ratio, logged, plain = bench_training(scratch, as_tensor, size)
                n_steps = LOOPS[size][2]
                step_us = plain / n_steps * 1e6
                print(f"{size} MLP, {n_steps} steps of {step_us:.0f} us (CPU time, 1 thread), "
                      f"{TRAIN_REPS} interleaved pairs, logging {what} every step:")
                print(f"  training slowdown: {100 * (ratio - 1):+.2f}% (median of pair ratios), "
                      f"{100 * (logged / plain - 1):+.2f}% (fastest vs fastest)"
                      + ("; target < 1%" if size == "small" else ""))
            print(f"  implied by the per-step cost above alone: "
                  f"{100 * overhead / (step_us * 1000):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
