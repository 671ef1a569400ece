"""``traintop import DIR``: TensorBoard runs made into traintop runs.

Each directory that holds event files is one run, as TensorBoard shows them. Its scalars
(exact tags, steps and wall times, read with the ``tensorboard`` package's reader) are
written into a new run directory the way an offline ``traintop.init`` run leaves one: a
spool of metrics records, an exit.json, and last of all the offline.json marker. The
daemon imports such directories on its own (``engine.server.attach``), ingesting the
spool in its usual small steps, so an import of millions of points never holds up the
engine, and one cut short leaves no marker and so no half run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.common.runs import new_run_id
from engine.common.tb_events import EventDir, Scalar
from engine.rundir.paths import RunDir, StatePaths, private_opener, write_json_atomic
from engine.rundir.state_dir import ensure_private_dir

# Points per spool line: big enough to write fast, small enough for the daemon's tick.
BATCH = 5000
def run_name(source: Path, root: Path) -> str:
    """``exp1`` for ROOT/exp1, ``exp1/eval`` for ROOT/exp1/eval, ROOT's name for ROOT."""
    return source.name if source == root else source.relative_to(root).as_posix()


def write_import(paths: StatePaths, source: Path, name: str) -> tuple[str, int]:
    """Write a finished run holding the scalars of ``source``; its id and point count."""
    scalars = EventDir(source, recursive=False).poll()
    runs = ensure_private_dir(paths.runs)
    while True:
        run_id = new_run_id()
        rundir = RunDir(runs / run_id)
        try:
            rundir.path.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    last = max((s[0] for s in scalars), default=0)
    with open(rundir.spool, "a", encoding="utf-8", opener=private_opener) as spool:
        for record in _records(scalars, last):
            spool.write(json.dumps(record, separators=(",", ":")) + "\n")
    first_time = min((s[3] for s in scalars), default=time.time())
    last_time = max((s[3] for s in scalars), default=first_time)
    write_json_atomic(rundir.exit, {"generation": 1, "returncode": 0, "time": last_time})
    write_json_atomic(rundir.offline, {
        "name": name, "config": {"logdir": str(source)}, "imported": str(source),
        "argv": ["traintop", "import", str(source)], "cwd": os.getcwd(), "device": "-",
        # This process is not the run's: a start time no process has keeps the daemon
        # from ever signalling it; exit.json already says how the run ended.
        "pid": os.getpid(), "pid_start": 0.0,
        "created": first_time, "divergence_factor": None,
    })
    return run_id, len(scalars)


def _records(scalars: list[Scalar], last: int) -> Iterable[dict[str, Any]]:
    """The spool records of a whole run: running, its points in batches, finished."""
    start = scalars[0][3] if scalars else time.time()
    yield {"t": "state", "gen": 1, "state": "running", "step": 0, "total": None, "time": start}
    for i in range(0, len(scalars), BATCH):
        batch = scalars[i : i + BATCH]
        yield {"t": "metrics", "gen": 1, "points": [list(s) for s in batch],
               "done": max(s[0] for s in batch)}
    yield {"t": "state", "gen": 1, "state": "finished", "step": last, "time": time.time()}
