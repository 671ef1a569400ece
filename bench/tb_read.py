"""How fast TensorBoard event files are read: traintop's reader against TensorBoard's own
EventAccumulator (what ``tensorboard --logdir`` loads with), on the same files, in the
same run. Prints points a second and the ratio.

    .venv/bin/python bench/tb_read.py [--points 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from engine.common.tb_events import EventDir


def write(root: Path, points: int) -> None:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(root / "run"))
    for step in range(points // 2):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step, walltime=1.7e9 + step)
        writer.add_scalar("lr", 1e-3, step, walltime=1.7e9 + step)
    writer.close()


def traintop_read(root: Path) -> int:
    return len(EventDir(root).poll())


def tensorboard_read(root: Path) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(root / "run"), size_guidance={"scalars": 0})
    acc.Reload()
    return sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        began = time.perf_counter()
        write(root, args.points)
        took = time.perf_counter() - began
        print(f"wrote {args.points} scalars with tensorboardX in {took:.1f} s")
        rates = {}
        for name, read in (("tensorboard EventAccumulator", tensorboard_read),
                           ("traintop EventDir", traintop_read)):
            began = time.perf_counter()
            count = read(root)
            took = time.perf_counter() - began
            rates[name] = count / took
            print(f"{name:30s} {count} points in {took:6.2f} s: {count / took:9.0f} points/s")
        ratio = rates["traintop EventDir"] / rates["tensorboard EventAccumulator"]
        print(f"traintop reads {ratio:.2f}x as fast as TensorBoard's own loader")


if __name__ == "__main__":
    main()
