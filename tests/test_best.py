"""Each run's best (lowest) and highest value of every metric, as ``list_runs`` gives them.

The daemon reads it from the chunks' summaries and the loose points, one query
per page of runs; here the points sit on both sides of that line.
"""

from __future__ import annotations

import math

from engine.client.events import RunInfo
from engine.rundir.state_dir import DIR_MODE
from engine.server.chunks import CHUNK_POINTS
from engine.server.store import Store
from tests.conftest import Engine
from tests.snapshot_tests.fixed_state import EPOCH

SEALED, LOOSE, EMPTY = "b4st2a", "b4st3b", "b4st4c"


def _points(count: int, low_at: int, low: float, high_at: int) -> list[list[object]]:
    """``count`` loss and acc points; loss is lowest at ``low_at``, highest (50 + low) at
    ``high_at``, NaN and ±inf here and there."""
    points: list[list[object]] = []
    for step in range(count):
        loss = low if step == low_at else 2.0 + math.sin(step)
        if step == high_at:
            loss = 50 + low
        if step in (5, count - 3):
            loss = math.nan
        if step in (7, count - 2):
            loss = -math.inf  # no value, not a best: never shown as one
        if step == 9:
            loss = math.inf
        points.append([step, "loss", loss, EPOCH + step])
        points.append([step, "acc", 0.5 + step / (2 * count), EPOCH + step])
    return points


def _store(engine: Engine) -> None:
    paths = engine.paths
    paths.home.mkdir(mode=DIR_MODE, parents=True)
    paths.runs.mkdir(mode=DIR_MODE)
    store = Store(paths.store)
    try:
        for n, run_id in enumerate((SEALED, LOOSE, EMPTY)):
            paths.run_dir(run_id).path.mkdir(mode=DIR_MODE)
            store.create_run({"id": run_id, "name": f"best-{n}", "workload": "synthetic",
                              "config": {}, "state": "queued", "released": False,
                              "device": "cpu", "cwd": "/", "created": EPOCH + n}, "created")
            store.set_state(run_id, "killed", "killed by user", ended=EPOCH + 10)
        count = 2 * CHUNK_POINTS + 300  # two chunks, then loose points
        # The lowest loss inside a chunk for one run, among the loose points for the other.
        store.add_metrics(SEALED, _points(count, 700, 0.125, 800), spool_offset=0, step=count)
        store.add_metrics(LOOSE, _points(count, count - 10, 0.25, count - 20), spool_offset=0,
                          step=count)
    finally:
        store.close()
    assert engine.cli("engine", "start").code == 0


def test_list_runs_gives_each_runs_lowest_value_of_each_metric(engine: Engine) -> None:
    _store(engine)
    listed = {r["id"]: r for r in engine.call("list_runs", best=True)["runs"]}
    assert listed[SEALED]["best"] == {"loss": 0.125, "acc": 0.5}
    assert listed[LOOSE]["best"] == {"loss": 0.25, "acc": 0.5}
    assert listed[EMPTY]["best"] == {}
    assert RunInfo.from_wire(listed[SEALED]).best == {"loss": 0.125, "acc": 0.5}
    # Not asked for (``ls``), or in a brief listing, it costs nothing and is left out.
    assert all("best" not in r for r in engine.call("list_runs")["runs"])
    assert all("best" not in r for r in engine.call("list_runs", best=True, brief=True)["runs"])


def test_list_runs_gives_the_highest_value_of_each_metric_when_asked(engine: Engine) -> None:
    _store(engine)
    listed = {r["id"]: r for r in engine.call("list_runs", highest=True)["runs"]}
    top_acc = 0.5 + (2 * CHUNK_POINTS + 299) / (2 * (2 * CHUNK_POINTS + 300))
    assert listed[SEALED]["highest"] == {"loss": 50.125, "acc": top_acc}  # in a chunk
    assert listed[LOOSE]["highest"] == {"loss": 50.25, "acc": top_acc}  # a loose point
    assert listed[EMPTY]["highest"] == {}
    assert RunInfo.from_wire(listed[LOOSE]).highest == listed[LOOSE]["highest"]
    assert all("highest" not in r for r in engine.call("list_runs", best=True)["runs"])
