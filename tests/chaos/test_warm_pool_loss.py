"""The warm pool loses a process: a launch still works, and a pool never outlives its daemon."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from engine.rundir.paths import read_json
from tests.conftest import TERMINAL, Engine, wait_until
from tests.test_warm_pool import start, waiting_worker, worker_of

pytestmark = pytest.mark.warm_pool


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def pool_shim(engine: Engine, worker_pid: int) -> int:
    for path in engine.paths.warm.glob("*/ready.json"):
        info = read_json(path)
        if isinstance(info, dict) and info["pid"] == worker_pid:
            return int(info["shim_pid"])
    raise AssertionError(f"no ready.json names worker {worker_pid}")


def test_a_killed_warm_worker_or_warm_shim_does_not_break_the_next_launch(
    engine: Engine,
) -> None:
    start(engine, "synthetic", "steps=3")
    killed = waiting_worker(engine)
    os.kill(killed, signal.SIGKILL)
    after_worker = start(engine, "synthetic", "steps=20")  # at once: the pool may not know yet
    assert engine.wait_state(after_worker, *TERMINAL)["state"] == "finished"
    assert worker_of(engine, after_worker)["pid"] != killed

    replacement = waiting_worker(engine, not_in={killed})
    os.kill(pool_shim(engine, replacement), signal.SIGKILL)
    after_shim = start(engine, "synthetic", "steps=20")
    assert engine.wait_state(after_shim, *TERMINAL)["state"] == "finished"
    assert len(engine.losses(after_shim)) == 20
    wait_until(lambda: gone(replacement), "the orphaned warm worker ends")
    waiting_worker(engine, not_in={killed, replacement})  # and the pool is whole again


def test_the_pool_ends_with_its_daemon_even_a_killed_one(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=100000", "sleep=0.01")
    worker = waiting_worker(engine)
    shim = pool_shim(engine, worker)
    daemon = engine.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: gone(worker) and gone(shim), "the warm shim and worker end")
    # The run itself is not the pool's: it trains on without a daemon.
    assert not gone(int(engine.run(run_id)["pid"]))
    assert engine.cli("kill", run_id).code == 0
