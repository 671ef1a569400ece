"""How long a fork, and a resume after ``pause --release``, take to their first step.

Issue 14's target: no longer than a cold ``python -c "import torch"`` on the CPU
(and 2 s on a GPU). On a fresh engine each, with the warm pool on and then off
(``TRAINTOP_WARM_POOL=0``), a charlm parent trains; it is forked REPS times and
one child is released and resumed REPS times. Each generation's startup.json
(written by the worker) splits its start:

- request: the fork or resume request to the daemon's launch (a fork waits for
  the parent's checkpoint at its next step; a resume waits for nothing);
- spawn: the launch to the worker's main (cold: a new interpreter; warm: the fork
  by the pool's server, a few ms);
- import: torch and the workload imported (warm: already done);
- cuda: CUDA initialised (a CUDA run only);
- build+ckpt: the model built, the data prepared (or read from the cache) and
  the checkpoint loaded;
- first step: that step itself (cold: with torch's first-optimizer imports).

Medians of REPS, and each total as a ratio to a cold ``import torch`` timed in
the same run, interleaved with the trials. A GPU is used when one is present.

    .venv/bin/python bench/fork_latency.py [--reps 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.client.client import Client
from engine.rundir.paths import StatePaths, read_json

PARENT = ["steps=100000", "batch=16", "block=64", "d_model=96", "layers=2"]
PHASES = ("request", "spawn", "import", "cuda", "build+ckpt", "first step")


def import_torch_s() -> float:
    """Wall time of a cold ``python -c "import torch"``, as the issue measured it."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - began


def wait_for(check: Callable[[], Any], what: str, timeout: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"fork_latency: timed out waiting for {what}")
        time.sleep(0.02)


def startup(paths: StatePaths, run_id: str, generation: int) -> dict[str, Any]:
    """The generation's startup.json once its first step is done."""

    def written() -> dict[str, Any] | None:
        info = read_json(paths.run_dir(run_id).startup)
        ok = isinstance(info, dict) and info.get("generation") == generation
        return info if ok else None

    found: dict[str, Any] = wait_for(written, f"run {run_id} generation {generation}")
    return found


def launched_at(client: Client, run_id: str) -> float:
    """When the daemon launched the run's latest generation (its last 'starting' event)."""
    events = client.call("get_run", run=run_id)["events"]
    return float([e for e in events if e["state"] == "starting"][-1]["time"])


def phases(asked: float, launched: float, info: dict[str, Any]) -> dict[str, float]:
    """The phases of one start, in seconds (see the module docstring)."""
    cuda = info.get("cuda_ready") or info["imported"]
    ckpt = info.get("checkpoint_loaded") or cuda
    return {
        "request": launched - asked,
        "spawn": info["main"] - launched,
        "import": info["imported"] - info["main"],
        "cuda": cuda - info["imported"],
        "build+ckpt": ckpt - cuda,
        "first step": info["first_step"] - ckpt,
        "total": info["first_step"] - asked,
    }


def pool_ready(paths: StatePaths) -> bool:
    return any(paths.warm.glob("*/ready.json"))


def trial(warm: bool, reps: int, device: str,
          baseline: list[float]) -> dict[str, list[dict[str, float]]]:
    home = Path(tempfile.mkdtemp(prefix="tt-fork-"))
    os.environ["TRAINTOP_HOME"] = str(home)
    os.environ["TRAINTOP_WARM_POOL"] = "1" if warm else "0"
    os.environ["TRAINTOP_CPU_SLOTS"] = "8"
    paths = StatePaths(home)
    found: dict[str, list[dict[str, float]]] = {"fork": [], "resume": []}
    try:
        with Client(paths).connect(autostart=True) as client:
            parent = client.call("start", workload="charlm", overrides=PARENT, device=device,
                                 cwd="/")["id"]
            wait_for(lambda: client.call("get_run", run=parent)["step"] >= 20, "the parent")
            child = ""
            for _ in range(reps):
                baseline.append(import_torch_s())
                if warm:
                    wait_for(lambda: pool_ready(paths), "the fork server")
                asked = time.time()
                child = client.call("fork", run=parent)["id"]
                info = startup(paths, child, 1)
                found["fork"].append(phases(asked, launched_at(client, child), info))
                client.call("kill", run=child, grace=1)
            child = client.call("fork", run=parent)["id"]
            startup(paths, child, 1)
            client.call("kill", run=parent, grace=1)
            for generation in range(2, reps + 2):
                baseline.append(import_torch_s())
                client.call("pause", run=child, release=True)
                wait_for(lambda: client.call("get_run", run=child)["released"], "the release")
                if warm:
                    wait_for(lambda: pool_ready(paths), "the fork server")
                asked = time.time()
                client.call("resume", run=child)
                info = startup(paths, child, generation)
                found["resume"].append(phases(asked, launched_at(client, child), info))
            client.call("kill", run=child, grace=1)
            client.call("shutdown")
    finally:
        time.sleep(0.5)
        shutil.rmtree(home, ignore_errors=True)
    return found


def has_cuda() -> bool:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                         capture_output=True, text=True)
    return out.stdout.strip() == "True"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    device = "cuda" if has_cuda() else "cpu"
    baseline: list[float] = []
    results = {}
    for warm in (True, False):
        results["warm pool on" if warm else "warm pool off"] = trial(
            warm, args.reps, device, baseline
        )
    torch_s = statistics.median(baseline)
    print(f"device {device}; cold 'python -c \"import torch\"': median {torch_s:.2f} s "
          f"of {len(baseline)} (min {min(baseline):.2f}), interleaved with the trials")
    header = f"{'':26}" + "".join(f"{p:>11}" for p in (*PHASES, "total")) + "   vs import"
    print(header)
    summary: dict[str, Any] = {"device": device, "import_torch_s": torch_s}
    for mode, found in results.items():
        for what, rows in found.items():
            medians = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            summary[f"{what}, {mode}"] = medians
            cells = "".join(f"{medians[p]:>10.2f}s" for p in (*PHASES, "total"))
            print(f"{what + ', ' + mode:26}{cells}   {medians['total'] / torch_s:>6.2f}x")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
