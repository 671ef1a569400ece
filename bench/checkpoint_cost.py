"""What ``--checkpoint-every`` costs a run: the time of one checkpoint, against a step.

Run: ``.venv/bin/python bench/checkpoint_cost.py [--steps 300] [--every 25] [--reps 3]``.

The real shim and worker (no daemon: the bench plays its part, writing launch.json as
it would) train charlm for ``--steps`` steps, with no checkpoints of its own and with one
every ``--every`` steps, the two interleaved ``--reps`` times. Each run's training time
is the span of its loss points' times (the start-up is left out); one checkpoint costs
the difference of the medians over the checkpoints written. The baseline is the same
run without checkpoints, in the same bench, so the ratio is what choosing an interval
costs: a checkpoint of C ms every T seconds slows training by about C / T.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.rundir.paths import RunDir, write_json_atomic  # noqa: E402

CONFIG = {"layers": 2, "d_model": 96, "batch": 32, "block": 64, "seed": 0}


def train(home: Path, name: str, steps: int, every: int | None) -> tuple[float, int]:
    """Seconds from the first loss point to the last, and the bytes of one checkpoint."""
    run_dir = home / name
    run_dir.mkdir(parents=True)
    paths = RunDir(run_dir)
    write_json_atomic(paths.launch, {
        "run_id": name, "name": name, "generation": 1, "workload": "charlm",
        "config": {**CONFIG, "steps": steps}, "device": "cpu", "resume_from": None,
        "control_offset": 0, "checkpoint_every": None if every is None else {"steps": every},
    })
    shim = subprocess.run([sys.executable, "-m", "engine.run.shim", str(run_dir)], cwd=ROOT,
                          start_new_session=True, timeout=600, check=False)
    if shim.returncode != 0:
        raise SystemExit(f"{name}: the worker failed (see {paths.stderr})")
    times = [point[3] for line in paths.spool.read_text().splitlines()
             if (record := json.loads(line)).get("t") == "metrics"
             for point in record["points"] if point[1] == "loss"]
    sizes = [p.stat().st_size for p in paths.checkpoints.glob("*.pt")]
    return max(times) - min(times), max(sizes, default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="traintop-ckpt-"))
    plain: list[float] = []
    saving: list[float] = []
    size = 0
    try:
        for rep in range(args.reps):
            plain.append(train(home, f"plain{rep}", args.steps, None)[0])
            seconds, size = train(home, f"every{rep}", args.steps, args.every)
            saving.append(seconds)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    # Written at steps every, 2 every, ... below the last (the final one is not ours).
    count = (args.steps - 1) // args.every
    base, with_ckpt = statistics.median(plain), statistics.median(saving)
    step_ms = 1000 * base / args.steps
    each_ms = 1000 * max(0.0, with_ckpt - base) / count
    print(f"charlm {CONFIG['layers']} layers x {CONFIG['d_model']}, {args.steps} steps, "
          f"median of {args.reps}; a checkpoint is {size / 1e6:.2f} MB")
    print(f"no checkpoints              {base:7.2f} s  ({step_ms:.1f} ms a step)")
    print(f"every {args.every} steps ({count} of them) {with_ckpt:7.2f} s  "
          f"x{with_ckpt / base:.3f} the baseline")
    print(f"one checkpoint              {each_ms:7.1f} ms  = {each_ms / step_ms:.1f} steps; "
          f"every 10 minutes that is {100 * each_ms / 600_000:.4f} % of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
