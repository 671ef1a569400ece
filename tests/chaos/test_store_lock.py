"""Another process locks the store while runs log: nothing is lost, nothing stored twice."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from engine.server.store import BUSY_TIMEOUT
from tests.conftest import TERMINAL, Engine, wait_until
from tests.test_engine import start
from tests.test_tui import until
from tui.app import TraintopApp

# Holds a write transaction on the store until its stdin closes (a backup tool, a
# person in the sqlite3 shell). Longer than the daemon's wait for a lock, so its
# writes fail rather than wait it out.
_HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""
LOCKED_FOR = BUSY_TIMEOUT + 1.5


@contextlib.contextmanager
def store_locked(path: Path) -> Iterator[None]:
    """A second process holds BEGIN IMMEDIATE on the store for the ``with`` block."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "locked\n"
        yield
    finally:
        holder.stdin.close()
        assert holder.wait(10) == 0


def _steps_stored_once(engine: Engine, run_id: str, steps: int) -> None:
    with engine.client() as client:
        points = client.all_metrics(run_id)
    assert len(points) == steps  # one key: each step's loss, stored exactly once
    assert sorted(p[0] for p in points) == list(range(steps))


def test_points_logged_while_the_store_is_locked_are_stored_once(engine: Engine) -> None:
    steps = 2500  # ~200 steps a second: still training after the lock and a restart
    run_id = start(engine, "synthetic", f"steps={steps}", "sleep=0.004")
    engine.wait_step(run_id, 50)
    spool = engine.paths.run_dir(run_id).spool
    with store_locked(engine.paths.store):
        size = spool.stat().st_size
        time.sleep(LOCKED_FOR)
        assert spool.stat().st_size > size  # training went on meanwhile
        step_in_lock = engine.run(run_id)["step"]  # the daemon still answers
        # ... and says, where users look, that what it shows is old.
        listed = wait_until(lambda: (r := engine.cli("ls")).err and r, timeout=30)
        assert listed.code == 0 and run_id in listed.out
        assert listed.err.startswith("traintop: warning: the engine cannot write its store "
                                     "since "), listed.err
        assert listed.err.rstrip().endswith("(database is locked): what is shown is as of "
                                            "then; runs train on, their points wait in their "
                                            "spools"), listed.err
        status = engine.cli("engine", "status").out
        assert "warning: the engine cannot write its store since " in status, status
    engine.wait_step(run_id, step_in_lock + 200)  # storing again, and the run goes on
    wait_until(lambda: not engine.cli("ls").err, timeout=30)  # and the warning is gone
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "start").code == 0
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished", run
    assert run["skipped_records"] == run["skipped_points"] == 0
    _steps_stored_once(engine, run_id, steps)
    log = engine.paths.daemon_log.read_text()
    # Said once when the store locked and once when it was free, not at every retry.
    assert log.count("the store cannot be written") == 1, log
    assert log.count("the store can be written again") == 1, log


def test_a_run_that_ends_while_the_store_is_locked_finishes_once_it_is_free(
    engine: Engine,
) -> None:
    steps = 300
    run_id = start(engine, "synthetic", f"steps={steps}", "sleep=0.005")
    engine.wait_step(run_id, 20)
    exit_file = engine.paths.run_dir(run_id).exit
    with store_locked(engine.paths.store):
        deadline = time.monotonic() + 60
        while not exit_file.exists():
            assert time.monotonic() < deadline, "the worker never ended"
            time.sleep(0.05)
        time.sleep(LOCKED_FOR)
        # Not ended before its points are stored.
        assert engine.run(run_id)["state"] == "running"
    run = engine.wait_state(run_id, *TERMINAL, timeout=30)
    assert run["state"] == "finished", run
    _steps_stored_once(engine, run_id, steps)
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "start").code == 0
    _steps_stored_once(engine, run_id, steps)


def test_a_command_refused_by_a_locked_store_says_so_and_changes_nothing(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=3000", "sleep=0.01")
    engine.wait_step(run_id, 10)
    with store_locked(engine.paths.store):
        result = engine.cli("pause", run_id)
        assert result.code != 0
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and "locked" in lines[0], result.err
        assert "internal error" not in result.err
    assert engine.run(run_id)["state"] == "running"  # the pause was not half made
    assert engine.cli("kill", run_id).code == 0


def test_the_tui_says_while_the_store_cannot_be_written(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=100000", "sleep=0.01")
    engine.wait_step(run_id, 5)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(220, 30)) as pilot:
            await until(pilot, lambda: app.state.connected and run_id in app.state.runs)
            status = app.query_one("#status")
            with store_locked(engine.paths.store):
                await until(pilot, lambda: "cannot write its store" in str(status.render()),
                            timeout=LOCKED_FOR + 20)
                assert "(database is locked)" in str(status.render())
            await until(pilot, lambda: "cannot write its store" not in str(status.render()),
                        timeout=30)

    asyncio.run(scenario())
    assert engine.cli("kill", run_id).code == 0


def test_a_kill_goes_out_while_the_store_is_locked(engine: Engine) -> None:
    """A runaway run must not outlive a lock someone else holds on the store: the kill's
    signals need no store. It is recorded as killed once the store can be written."""
    run_id = start(engine, "synthetic", "steps=100000", "sleep=0.01")
    pid = engine.wait_step(run_id, 5)["pid"]
    with store_locked(engine.paths.store):
        killed = engine.cli("kill", run_id, "--grace", "1")
        wait_until(lambda: not psutil.pid_exists(pid), timeout=30)  # gone, lock or not
    assert killed.code == 0, killed.err
    assert killed.out.startswith(f"sent {run_id} (synthetic-1) its kill; not recorded yet: the "
                                 "engine cannot write its store since "), killed.out
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "killed", run
