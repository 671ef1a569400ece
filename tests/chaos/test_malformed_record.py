"""Malformed spool records are skipped and counted; the run goes on and every good point stays."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from engine.client.events import RunDescription
from tests.conftest import TERMINAL, Engine
from tests.test_engine import start
from tui.screens.detail import detail_markup

NOW = time.time()
# One of each way a line can be wrong, for every kind of record.
MALFORMED = [
    b'{"t":"state","gen":1,"state":"running","step":"abc","time":1}',
    b'{"t":"state","gen":1,"state":"finished","step":-5,"time":1}',
    b'{"t":"state","gen":1,"state":"asleep","step":3,"time":1}',
    b'{"t":"state","gen":1,"state":"running","step":3,"total":"many","time":1}',
    b'{"t":"checkpoint","gen":1,"request":7,"step":3,"path":"x.pt","time":1}',
    b'{"t":"error","gen":1,"message":null,"time":1}',
    b'{"t":"error","gen":"one","message":"boom","time":1}',
    b'{"t":"metrics","gen":1,"points":"none"}',
    b'{"t":"mystery","gen":1}',
    b"[1, 2, 3]",
    b"not json at all \xff",
]
# Good points of a key the workload does not log, among bad ones.
MIXED = {
    "t": "metrics",
    "gen": 1,
    "points": [
        [0, "probe", 1.0, NOW],
        [1, "probe", "x", NOW],  # not a number
        [2, "probe", 3.0, NOW],
        [3, 5, 4.0, NOW],  # the key is not a string
        [4, "probe", None, NOW],  # a missing value is fine: it is kept as NaN
        [True, "probe", 6.0, NOW],  # a step is a number, not true
        [6, "probe", 7.0, NOW],
        [7, "probe", 8.0],  # no time
    ],
}
BAD_POINTS = 4


def _append(spool: Path, lines: list[bytes]) -> None:
    """Append whole lines the way a worker does (O_APPEND, one write each)."""
    fd = os.open(spool, os.O_WRONLY | os.O_APPEND)
    try:
        for line in lines:
            os.write(fd, line + b"\n")
    finally:
        os.close(fd)


def test_malformed_records_are_skipped_and_counted_and_the_run_finishes(
    engine: Engine,
) -> None:
    steps = 250
    run_id = start(engine, "synthetic", f"steps={steps}", "sleep=0.01")
    engine.wait_step(run_id, 20)
    _append(engine.paths.run_dir(run_id).spool, [*MALFORMED, json.dumps(MIXED).encode()])
    engine.wait(run_id, lambda r: r["skipped_points"] > 0 or r["state"] in TERMINAL)
    # Read again from the stored offset by a new daemon: nothing is counted twice.
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "start").code == 0

    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished", run
    assert sorted(engine.losses(run_id)) == list(range(steps))
    probe = engine.losses(run_id, "probe")
    assert math.isnan(probe.pop(4)) and probe == {0: 1.0, 2: 3.0, 6: 7.0}
    shown = engine.cli("show", run_id, "--json").json()
    assert (shown["skipped_records"], shown["skipped_points"]) == (len(MALFORMED), BAD_POINTS)
    said = f"{len(MALFORMED)} malformed spool records, {BAD_POINTS} bad points"
    assert f"skipped   {said}" in engine.cli("show", run_id).out
    described = RunDescription.from_wire(shown)
    assert f"skipped   [/b]{said}" in detail_markup(described)  # the TUI's run detail too
    # Said once in the log, however many were skipped, rather than at every tick.
    assert engine.paths.daemon_log.read_text().count("malformed spool records") == 1


def test_a_run_can_still_be_killed_after_a_malformed_record(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=100000", "sleep=0.01")
    engine.wait_step(run_id, 10)
    _append(engine.paths.run_dir(run_id).spool, [MALFORMED[0]])
    engine.wait(run_id, lambda r: r["skipped_records"] == 1)
    assert engine.cli("kill", run_id, "--grace", "5").code == 0
    run = engine.wait_state(run_id, *TERMINAL, timeout=30)
    assert run["state"] == "killed", run
    assert "skipped   1 malformed spool record\n" in engine.cli("show", run_id).out
