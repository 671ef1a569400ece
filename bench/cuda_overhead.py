"""What logging every step costs on a launch-bound step: traintop against SummaryWriter.

Issue 14's case: an MLP step (batch 256, hidden 1024, AdamW) short enough that
launching its kernels is what bounds it (0.85 ms on an H200). Four loops train
the same model, their repetitions interleaved so drift hits all alike:

- plain: ``for step in range(n)``, no logging;
- traintop: ``for step in run.steps(n)``, ``run.log(loss=loss.detach())`` every step;
- run.steps only: traintop's loop without ``run.log``, which splits its cost in two;
- SummaryWriter: ``writer.add_scalar("loss", loss.item(), step)`` every step (torch's,
  or tensorboardX's when tensorboard is not installed).

Prints per step the median and min over REPS of each, and each slowdown against
plain: paired (the median over reps of the loop's time over plain's in that rep,
which cancels drift between reps) and min against min. Each rep's times go to
stderr as it ends. On CUDA when present, else on the CPU (it says so). Then, on
the CPU, what one ``run.log`` call and one step of ``run.steps`` cost alone, in
microseconds, and that as a share of the plain step.

    .venv/bin/python bench/cuda_overhead.py [--reps 15] [--steps N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.run.run_api import Run  # noqa: E402

BATCH, HIDDEN = 256, 1024


def make_run(run_dir: Path, device: str) -> Run:
    """A Run on a scratch directory, as the worker builds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    launch = {"run_id": "bench", "name": "bench", "generation": 1, "workload": "bench",
              "config": {}, "device": device, "resume_from": None, "control_offset": 0}
    return Run(run_dir, launch)


def summary_writer(logdir: str) -> tuple[Any, str]:
    """torch's SummaryWriter, or tensorboardX's where tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(logdir), "torch.utils.tensorboard"
    except ImportError:
        from tensorboardX import SummaryWriter as XWriter

        return XWriter(logdir), "tensorboardX"


def build(device: str) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, 1),
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(BATCH, HIDDEN, device=device)
    y = torch.randn(BATCH, 1, device=device)
    return model, optimizer, x, y


def loops(device: str, scratch: Path) -> tuple[dict[str, Callable[[int], None]], str]:
    """The loops, each training ``n`` steps of the same model."""
    model, optimizer, x, y = build(device)
    writer, writer_name = summary_writer(str(scratch / "tb"))
    counter = [0]

    def step() -> torch.Tensor:
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        return loss

    def plain(n: int) -> None:
        for _ in range(n):
            step()

    def traintop(n: int) -> None:
        counter[0] += 1
        run = make_run(scratch / f"run{counter[0]}", device)
        for _ in run.steps(n):
            run.log(loss=step().detach())
        run.flush()

    def steps_only(n: int) -> None:  # splits traintop's cost: the loop without run.log
        counter[0] += 1
        run = make_run(scratch / f"run{counter[0]}", device)
        for _ in run.steps(n):
            step()

    def tensorboard(n: int) -> None:
        for i in range(n):
            writer.add_scalar("loss", step().item(), i)

    found = {"plain": plain, "traintop": traintop, "run.steps only": steps_only,
             "SummaryWriter": tensorboard}
    return found, writer_name


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(device: str, reps: int, steps: int, scratch: Path) -> tuple[dict, str]:
    """Seconds per step of each loop, ``reps`` times, in rotating order."""
    found, writer_name = loops(device, scratch)
    for loop in found.values():  # warm-up: kernels chosen, allocator filled
        loop(max(10, steps // 5))
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in found}
    names = list(found)
    for rep in range(reps):
        turn = rep % len(names)
        for name in names[turn:] + names[:turn]:
            sync(device)
            began = time.perf_counter()
            found[name](steps)
            sync(device)
            times[name].append((time.perf_counter() - began) / steps)
        # As it goes, on stderr: a rep cut short by a time limit still tells something.
        print(f"rep {rep + 1}/{reps}: " + "  ".join(
            f"{name} {found_times[-1] * 1e3:.3f} ms" for name, found_times in times.items()
        ), file=sys.stderr, flush=True)
    return times, writer_name


def per_call_us(scratch: Path) -> dict[str, float]:
    """On the CPU, medians over batches of 1,000 calls, flushed between batches as a run is.

    One ``run.log`` of a float and of a detached scalar tensor (``t.detach()``
    itself shown apart), and one turn of ``run.steps`` with a ``run.log`` in it.
    """
    run = make_run(scratch / "calls", "cpu")
    loss = torch.tensor(0.5, requires_grad=True) * 2

    def timed(call: Callable[[], object], batches: int = 200, size: int = 1000) -> float:
        found = []
        for _ in range(batches):
            began = time.perf_counter_ns()
            for _ in range(size):
                call()
            found.append((time.perf_counter_ns() - began) / size / 1000)
            run.flush()
        return statistics.median(found)

    results = {
        "run.log(loss=float)": timed(lambda: run.log(loss=0.5)),
        "run.log(loss=t.detach())": timed(lambda: run.log(loss=loss.detach())),
        "(t.detach() alone)": timed(lambda: loss.detach()),
    }
    turns = make_run(scratch / "turns", "cpu")
    steps = turns.steps(10**9)
    results["run.steps turn + run.log"] = timed(
        lambda: (next(steps), turns.log(loss=loss.detach()))
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--steps", type=int, default=0, help="steps per rep (default: by device)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = args.steps or (400 if device == "cuda" else 40)
    with tempfile.TemporaryDirectory(prefix="tt-cuda-overhead-") as tmp:
        times, writer_name = interleaved(device, args.reps, steps, Path(tmp))
        calls = per_call_us(Path(tmp))
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU (no CUDA device here)"
    print(f"{where}; MLP batch {BATCH}, hidden {HIDDEN}, AdamW; {args.reps} interleaved reps "
          f"of {steps} steps; SummaryWriter from {writer_name}")
    plain = times["plain"]
    summary: dict[str, Any] = {"device": where, "steps": steps, "reps": args.reps}
    print("  slowdown: paired = the median over reps of each rep's time against the plain "
          "loop's in the same rep (drift cancels); min = min against min")
    for name, found in times.items():
        med, low = statistics.median(found), min(found)
        paired = (statistics.median(t / p for t, p in zip(found, plain, strict=True)) - 1) * 100
        slow_min = (low / min(plain) - 1) * 100
        summary[name] = {"median_ms": med * 1e3, "min_ms": low * 1e3,
                         "slowdown_paired_pct": paired, "slowdown_min_pct": slow_min}
        print(f"  {name:14} median {med * 1e3:7.3f} ms  min {low * 1e3:7.3f} ms  "
              f"slowdown {paired:+6.2f} % (paired)  {slow_min:+6.2f} % (min)")
    print("per call on the CPU:")
    for name, us in calls.items():
        print(f"  {name:26} {us:6.2f} us")
    # What the Python side of logging adds to a step, against the plain step's time.
    accounted = calls["run.steps turn + run.log"] / (min(plain) * 1e6) * 100
    print(f"  a turn of run.steps with a run.log is {accounted:.2f} % of the fastest plain step")
    summary["per_call_us"] = calls
    summary["accounted_pct"] = accounted
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
