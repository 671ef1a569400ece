"""The processes ``bench/scale.py`` starts, and the data they write.

``python bench/scale_parts.py write PLAN.json INDEX``
    A training script with many runs: every run of the plan's part INDEX is
    opened with ``traintop.init`` (an ``attach`` request to the daemon, as any
    user script does), then all of them advance together, a chunk of steps
    each in turn, logging with ``run.log`` through ``run.steps``. When a run
    marked as a parent reaches its fork step, this script asks the daemon to
    fork it, as a user would.
``python bench/scale_parts.py write ...`` with ``TRAINTOP_RUN_DIR`` set
    The same command line re-run by the run's shim for a fork child:
    ``traintop.init`` then continues the run from its parent's checkpoint.
``python bench/scale_parts.py tui HOME ROWS RUN:POINTS[,RUN:POINTS...] TIMEOUT``
    The real TUI app under Textual's ``run_test()``: prints when the runs
    table holds ROWS rows, then selects each RUN in turn and prints when its
    chart holds its POINTS loss points. Output: one JSON object per line.

Every value is a function of (seed, lr, key, step), so the TensorBoard side
of the bench writes exactly the points the runs logged.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Steps a run advances before the next run takes its turn (one run.log per step).
CHUNK_STEPS = 256
KEY_NAMES = ("loss", "acc", "grad_norm", "lr_now")


def key_names(count: int) -> list[str]:
    """The metric keys of a run that logs ``count`` of them: loss first."""
    return [KEY_NAMES[i] if i < len(KEY_NAMES) else f"metric_{i}" for i in range(count)]


def point_values(seed: int, lr: float, keys: int, step: int) -> dict[str, float]:
    """What a run logs at ``step``: a decaying curve per key with some wiggle."""
    wiggle = math.sin(seed * 7.1 + step * 0.9)
    return {
        name: (1.0 + i) * math.exp(-lr * step) + 0.05 * wiggle * (i + 1)
        for i, name in enumerate(key_names(keys))
    }


@dataclass
class RunSpec:
    """One run of the plan (a root run; ``fork_*`` set for one that gets forked)."""

    name: str
    seed: int
    lr: float
    steps: int
    keys: int
    fork_at: int | None = None
    fork_name: str | None = None
    fork_lr: float | None = None

    def config(self) -> dict[str, Any]:
        return {"seed": self.seed, "lr": self.lr, "steps": self.steps, "keys": self.keys}

    def fork_overrides(self) -> list[str]:
        """The child logs ``steps`` steps of its own, from the fork step on."""
        assert self.fork_at is not None
        return [f"lr={self.fork_lr}", f"steps={self.fork_at + self.steps}"]


def load_plan(path: Path) -> list[list[RunSpec]]:
    """The plan file: one list of run specs per writer process."""
    parts = json.loads(path.read_text())["parts"]
    return [[RunSpec(**spec) for spec in part] for part in parts]


# -- writer --------------------------------------------------------------------


@dataclass
class _Writing:
    spec: RunSpec
    run: Any  # traintop's Run
    steps: Iterator[int]


def write_part(specs: list[RunSpec], started_file: Path, finished_file: Path) -> int:
    """Open every run, then advance them in turns until all are finished.

    Writes the time of its first point to ``started_file``, of its last to ``finished_file``.
    """
    import torch

    import traintop
    from engine.client.client import Client

    writing = []
    for spec in specs:
        run = traintop.init(config=spec.config(), name=spec.name)
        if spec.fork_at is not None:  # what its checkpoint holds, for the fork
            run.track(rng=torch.Generator().manual_seed(spec.seed))
        writing.append(_Writing(spec, run, run.steps(spec.steps)))
    # Each init installed its run's handlers; runs that share this process read
    # new control lines at their next flush anyway, so a nudge only has to be harmless.
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    started_file.write_text(f"{time.time()!r}\n")
    client: Client | None = None
    while writing:
        for item in list(writing):
            spec, run = item.spec, item.run
            for _ in range(CHUNK_STEPS):
                step = next(item.steps, None)
                if step is None:  # run.steps saved and recorded the finish
                    run.record_exit(0)
                    writing.remove(item)
                    break
                run.log(**point_values(spec.seed, spec.lr, spec.keys, step))
                if step == spec.fork_at:
                    client = client or Client().connect(autostart=False)
                    client.call("fork", run=run.id, name=spec.fork_name,
                                overrides=spec.fork_overrides())
    finished_file.write_text(f"{time.time()!r}\n")
    if client is not None:
        client.close()
    return 0


def continue_fork() -> int:
    """A fork child, started by its shim: continue from the parent's checkpoint."""
    import torch

    import traintop

    run = traintop.init()
    cfg = run.config
    run.track(rng=torch.Generator())
    for step in run.steps(int(cfg["steps"])):
        run.log(**point_values(int(cfg["seed"]), float(cfg["lr"]), int(cfg["keys"]), step))
    return 0


# -- TensorBoard baseline -------------------------------------------------------


def write_events(logdir: Path, keys: int, steps: range, seed: int, lr: float) -> int:
    """One run's points as a TensorBoard event file; returns its size in bytes.

    tensorboardX's own ``EventsWriter``, one ``Event`` per scalar as
    ``SummaryWriter.add_scalar`` writes it, without add_scalar's queue thread
    and conversions (150 us a point here): the file is the same, written faster.
    """
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary

    logdir.mkdir(parents=True)
    writer = EventsWriter(str(logdir / "events"))
    wall_time = time.time()
    for step in steps:
        for tag, value in point_values(seed, lr, keys, step).items():
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
            writer.write_event(Event(wall_time=wall_time, step=step, summary=summary))
    writer.close()
    return sum(f.stat().st_size for f in logdir.iterdir())


def load_events(logdir: Path) -> tuple[float, int]:
    """Seconds for EventAccumulator to load every scalar of one run, and how many."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    started = time.perf_counter()
    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    accumulator.Reload()
    count = sum(len(accumulator.Scalars(tag)) for tag in accumulator.Tags()["scalars"])
    return time.perf_counter() - started, count


# -- TUI probe -----------------------------------------------------------------


def _say(event: str, **data: Any) -> None:
    print(json.dumps({"event": event, "time": time.time(), **data}), flush=True)


def _charted_points(app: Any, run_id: str) -> int:
    """How many stored points the chart's curve of the selected ``run_id`` stands for.

    The chart draws a screen-sized view (min/max per column, the EMA over every
    point): the view says how many points it covers.
    """
    from tui.widgets.loss_chart import LossChart

    for series in app.query_one(LossChart).series:
        if series.emphasis and series.label.startswith(run_id):
            view = app.feed.views.get(run_id)
            return view.data.n if view is not None else 0
    return 0


async def probe_tui(home: Path, rows: int, charts: list[tuple[str, int]], timeout: float) -> int:
    """Time the real app: all rows listed, then each of ``charts`` (run id, points)
    selected in turn and charted (a new run each time: nothing of it loaded yet).

    Each wait gives up after ``timeout`` seconds (exit status 1).
    """
    from tui.app import TraintopApp
    from tui.widgets.runs_table import RunsTable

    _say("imported")
    app = TraintopApp(home=home, autostart=False)
    async with app.run_test(size=(160, 50)) as pilot:
        table = app.query_one(RunsTable)
        deadline = time.monotonic() + timeout
        while len(table.order) < rows:
            if time.monotonic() > deadline:
                _say("gave_up", waiting_for="rows", rows=len(table.order))
                return 1
            await pilot.pause(0.01)
        await pilot.pause()  # let the frame holding them be painted
        _say("rows", rows=len(table.order))
        for run_id, points in charts:
            table.select(run_id)
            _say("selected", run=run_id, row=table.cursor)
            deadline = time.monotonic() + timeout
            while _charted_points(app, run_id) < points:
                if time.monotonic() > deadline:
                    _say("gave_up", waiting_for="chart", points=_charted_points(app, run_id))
                    return 1
                await pilot.pause(0.01)
            await pilot.pause()
            _say("chart", run=run_id, points=_charted_points(app, run_id))
    return 0


def main(argv: list[str]) -> int:
    if os.environ.get("TRAINTOP_RUN_DIR"):  # re-run by a shim: a fork child
        return continue_fork()
    if len(argv) == 3 and argv[0] == "write":
        plan = Path(argv[1])
        index = int(argv[2])
        return write_part(load_plan(plan)[index], plan.with_name(f"started-{index}"),
                          plan.with_name(f"finished-{index}"))
    if len(argv) == 5 and argv[0] == "tui":  # tui HOME ROWS ID:POINTS,... TIMEOUT
        import asyncio

        home, rows, charts, timeout = argv[1:]
        pairs = [(run_id, int(points)) for run_id, _, points in
                 (pair.partition(":") for pair in charts.split(","))]
        return asyncio.run(probe_tui(Path(home), int(rows), pairs, float(timeout)))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
