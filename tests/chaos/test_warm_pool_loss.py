"""The warm pool loses its fork server: a launch still works, the runs it forked train on,
and a server never outlives its daemon."""

from __future__ import annotations

import os
import signal

import psutil

from tests.conftest import TERMINAL, Engine, wait_until
from tests.test_warm_pool import start, waiting_worker, worker_of


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_killed_fork_server_breaks_neither_its_runs_nor_the_next_launch(
    engine: Engine,
) -> None:
    start(engine, "synthetic", "steps=3")
    killed = waiting_worker(engine)
    forked = start(engine, "synthetic", "steps=150", "sleep=0.01")
    assert worker_of(engine, forked)["warm"] is True
    os.kill(killed, signal.SIGKILL)
    after = start(engine, "synthetic", "steps=20")  # at once: the pool may not know yet
    assert engine.wait_state(after, *TERMINAL)["state"] == "finished"
    assert len(engine.losses(after)) == 20
    # The run the dead server forked is in its own session: it trains to its end.
    assert engine.wait_state(forked, *TERMINAL)["state"] == "finished"
    assert len(engine.losses(forked)) == 150
    replacement = waiting_worker(engine, not_in={killed})  # and the pool is whole again
    served = start(engine, "synthetic", "steps=5")
    assert worker_of(engine, served)["warm"] is True
    assert waiting_worker(engine) == replacement


def test_the_pool_ends_with_its_daemon_even_a_killed_one(engine: Engine) -> None:
    start(engine, "synthetic", "steps=3")
    server = waiting_worker(engine)
    run_id = start(engine, "synthetic", "steps=100000", "sleep=0.01")
    assert worker_of(engine, run_id)["warm"] is True
    daemon = engine.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: gone(server), "the fork server ends")
    # The run itself is not the pool's: it trains on without a daemon.
    engine.wait_step(run_id, 5)
    assert not gone(int(engine.run(run_id)["pid"]))
    assert engine.cli("kill", run_id).code == 0


def test_a_fork_server_that_stops_answering_is_replaced_and_its_runs_start_cold(
    engine: Engine,
) -> None:
    start(engine, "synthetic", "steps=3")
    server = waiting_worker(engine)
    os.kill(server, signal.SIGSTOP)  # alive, and deaf: the launch's line waits in its pipe
    made = engine.cli("start", "synthetic", "steps=20", "--no-wait", "--json")
    assert made.code == 0, made.err
    run_id = made.json()["id"]
    assert engine.wait_state(run_id, *TERMINAL, timeout=90)["state"] == "finished"
    assert worker_of(engine, run_id)["warm"] is False
    assert len(engine.losses(run_id)) == 20
    wait_until(lambda: gone(server), "the deaf server is killed")
    replacement = waiting_worker(engine, not_in={server})
    served = start(engine, "synthetic", "steps=5")
    assert worker_of(engine, served)["warm"] is True
    assert waiting_worker(engine) == replacement
