"""A damaged, emptied or deleted store is said at once, kept, and rebuilt from the run dirs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import TERMINAL, Engine, wait_until
from tests.test_tui import until
from tui.app import TraintopApp


def start(engine: Engine, *args: str) -> str:
    result = engine.cli("start", "synthetic", *args, "--json", "--no-wait")
    assert result.code == 0, result.err
    run_id: str = result.json()["id"]
    return run_id


def stop(engine: Engine) -> None:
    """Stop the engine, and fold the WAL into the store file, so damage to it is damage."""
    pid = engine.daemon_pid()
    assert engine.cli("engine", "stop").code == 0
    if pid is not None:  # 'stop' waits 10 s at most; a loaded machine may need longer
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).wait(60)
    db = sqlite3.connect(engine.paths.store)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()  # the last connection: the -wal and -shm files go


def refused_in_one_line(engine: Engine, *words: str) -> str:
    """``traintop ls`` fails with one line naming the store (not the 15 s start timeout)."""
    result = engine.cli("ls")
    assert result.code == 1 and result.out == "", result
    assert len(result.err.splitlines()) == 1, result.err
    line = result.err
    assert str(engine.paths.store) in line and "traintop engine rebuild" in line, line
    assert "did not start" not in line and "Traceback" not in line
    for word in words:
        assert word in line, line
    return line


def truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def garble_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"\x5a" * 100)


def garble_all_but_the_first_page(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(b"\xa5" * (path.stat().st_size - 4096))


@pytest.mark.parametrize(
    "damage", [truncate_half, garble_header, garble_all_but_the_first_page],
    ids=["truncated", "garbled-header", "garbled-pages"],
)
def test_a_damaged_store_is_said_in_one_line_and_left_as_it_is(
    engine: Engine, damage: Callable[[Path], None]
) -> None:
    engine.wait_state(start(engine, "steps=200", "extra_metrics=3"), *TERMINAL)
    stop(engine)
    assert not Path(f"{engine.paths.store}-wal").exists()
    damage(engine.paths.store)
    damaged = engine.paths.store.read_bytes()
    files = sorted(engine.paths.home.iterdir())
    refused_in_one_line(engine, "damaged")
    refused_in_one_line(engine, "damaged")  # and again: nothing was "repaired"
    assert engine.paths.store.read_bytes() == damaged
    assert sorted(engine.paths.home.iterdir()) == files  # no -wal or -shm made beside it


def test_the_tui_says_why_the_engine_cannot_start_on_a_damaged_store(engine: Engine) -> None:
    """Not 'lost the engine; reconnecting…' over an empty table: the damage, the file and
    what to do, as ls says them."""
    engine.wait_state(start(engine, "steps=20"), *TERMINAL)
    stop(engine)
    garble_header(engine.paths.store)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(200, 30)) as pilot:
            status = app.query_one("#status")
            await until(pilot, lambda: "damaged" in str(status.render()))
            await pilot.pause(1.0)  # a retry later, it still says why
            text = str(status.render())
            assert f"the store {engine.paths.store} is damaged" in text, text
            assert "traintop engine rebuild" in text and "lost the engine" not in text

    asyncio.run(scenario())


def test_a_store_found_damaged_while_the_engine_runs_is_written_no_more(engine: Engine) -> None:
    """Damage found mid-way (here: pages garbled under a running engine): the engine stops
    writing the file (writing on could spread the damage, and it came back listing runs as
    if all were well), says so in every listing and refusal, and runs train on."""
    for n in range(3):  # pages enough that garbling all but the first hits the runs'
        engine.wait_state(start(engine, "steps=300", "extra_metrics=3", f"seed={n}"), *TERMINAL)
    live = start(engine, "steps=100000", "sleep=0.01")
    engine.wait_step(live, 20)
    db = sqlite3.connect(engine.paths.store)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    garble_all_but_the_first_page(engine.paths.store)

    def refused_start() -> str | None:
        said = engine.cli("start", "synthetic", "steps=5")
        return said.err if said.code == 1 and "damaged" in said.err else None

    line = wait_until(refused_start, timeout=60)
    assert line.startswith(f"traintop: the store {engine.paths.store} is damaged ("), line
    assert line.rstrip().endswith("'traintop engine stop', then 'traintop engine rebuild'"), line
    spool = engine.paths.run_dir(live).spool
    time.sleep(2.0)  # a tick or two: the engine would store the live run's points now
    store, size = engine.paths.store.read_bytes(), spool.stat().st_size
    wal = Path(f"{engine.paths.store}-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    time.sleep(3.0)
    assert engine.paths.store.read_bytes() == store  # not written into
    assert (wal.stat().st_size if wal.exists() else 0) == wal_size
    assert spool.stat().st_size > size  # and training goes on
    assert "is damaged" in engine.cli("ls").err
    pid = engine.daemon_pid()
    assert engine.cli("engine", "stop").code == 0  # it stops, damage or not
    wait_until(lambda: pid is None or not psutil.pid_exists(pid), timeout=60)
    assert engine.cli("engine", "rebuild").code == 0
    assert engine.run(live)["state"] == "running"  # adopted by the new engine
    assert engine.cli("kill", live).code == 0


@pytest.mark.parametrize("how", ["deleted", "empty"])
def test_a_lost_store_with_run_directories_is_said_not_shown_as_no_runs(
    engine: Engine, how: str
) -> None:
    engine.wait_state(start(engine, "steps=20"), *TERMINAL)
    stop(engine)
    if how == "deleted":
        engine.paths.store.unlink()
    else:
        engine.paths.store.write_bytes(b"")
    said = "missing" if how == "deleted" else "empty"
    refused_in_one_line(engine, said, f"{engine.paths.runs} holds 1 runs")
    assert engine.paths.store.exists() == (how == "empty")


def everything(engine: Engine, run_id: str) -> dict[str, Any]:
    """What a run is and every point it has, as the engine serves them."""
    run = engine.run(run_id)
    with engine.client() as client:
        points = client.all_metrics(run_id)
    kept = ("id", "name", "workload", "config", "state", "parent_id", "fork_step", "step",
            "total_steps", "exit_code", "device", "cwd", "last", "divergence_factor")
    return {"run": {k: run[k] for k in kept}, "points": points}


def test_rebuild_recovers_every_point_and_keeps_the_damaged_store(engine: Engine) -> None:
    plain = start(engine, "steps=300", "extra_metrics=2")
    short = start(engine, "steps=50", "seed=7", "--divergence-factor", "40")
    failing = start(engine, "steps=100", "fail_at=60", "--no-divergence-pause")
    wrapped = engine.cli(
        "run", "--json", "--", sys.executable, "-c",
        "for i in range(30): print(f'step {i} loss {1 / (i + 1)}')",
    ).json()["id"]
    for run_id in (plain, short, failing, wrapped):
        engine.wait_state(run_id, *TERMINAL)
    fork = engine.cli("fork", short, "steps=80", "--json").json()["id"]
    engine.wait_state(fork, *TERMINAL)
    logged = {plain: 300 * 3, short: 50, failing: 60, wrapped: 30, fork: 30}
    before = {run_id: everything(engine, run_id) for run_id in logged}
    assert {r: len(b["points"]) for r, b in before.items()} == logged
    assert before[fork]["run"]["parent_id"] == short and before[fork]["run"]["fork_step"] == 50

    busy = engine.cli("engine", "rebuild")  # the engine holds the store: refused
    assert busy.code == 1 and "stop it first" in busy.err and len(busy.err.splitlines()) == 1
    stop(engine)
    garble_all_but_the_first_page(engine.paths.store)
    damaged = engine.paths.store.read_bytes()
    refused_in_one_line(engine, "damaged")

    rebuilt = engine.cli("engine", "rebuild")
    assert rebuilt.code == 0, rebuilt.err
    assert f"from 5 run directories ({sum(logged.values())} points)" in rebuilt.out
    aside = list(engine.paths.home.glob("store.sqlite.old-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # moved aside, not touched
    after = {run_id: everything(engine, run_id) for run_id in logged}
    assert after == before
    assert [r["id"] for r in engine.all_runs()] == [plain, short, failing, wrapped, fork]


def test_a_live_run_is_found_again_after_its_store_was_lost(engine: Engine) -> None:
    run_id = start(engine, "steps=300", "sleep=0.01")
    engine.wait_step(run_id, 20)
    stop(engine)  # the run goes on without an engine
    engine.paths.store.unlink()
    refused_in_one_line(engine, "missing")
    assert engine.cli("engine", "rebuild").code == 0
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished" and run["step"] == 300
    assert sorted(engine.losses(run_id)) == list(range(300))


def test_killed_runs_stay_killed_in_a_rebuilt_store(engine: Engine) -> None:
    # A worker exits 143 on SIGTERM, a queued run killed never had a process, and a
    # released run's last exit said 'released': only the directory can say 'killed'.
    assert engine.cli("queue", "one", "--parallel", "1").code == 0
    running = start(engine, "steps=100000", "sleep=0.01", "--queue", "one")
    queued = start(engine, "steps=10", "--queue", "one")
    released = start(engine, "steps=100000", "sleep=0.01")
    engine.wait_step(running, 5)
    engine.wait_step(released, 5)
    assert engine.cli("pause", "--release", released).code == 0
    engine.wait(released, lambda r: r["released"])
    assert engine.cli("kill", running, queued, released).code == 0
    ended = {r: engine.wait_state(r, *TERMINAL) for r in (running, queued, released)}
    assert {r["state"] for r in ended.values()} == {"killed"}
    stop(engine)
    assert engine.cli("engine", "rebuild").code == 0
    for run_id, before in ended.items():
        after = engine.run(run_id)
        assert after["state"] == "killed" and after["exit_reason"] == "killed by user", after
        assert after["step"] == before["step"]
    assert engine.cli("queue", "one").out.count("waiting") == 0  # nothing came back to life


def test_a_queued_fork_waits_again_after_a_rebuild_and_starts_at_its_fork_step(
    engine: Engine,
) -> None:
    # A fork waiting for a slot has no process and, before its first start, had no
    # directory either: a rebuilt store lost it. Now its launch.json says where it starts.
    parent = start(engine, "steps=60")
    engine.wait_state(parent, *TERMINAL)
    assert engine.cli("queue", "later", "--pause").code == 0
    result = engine.cli("fork", parent, "lr=0.01,0.02", "steps=90", "--queue", "later",
                        "--tag", "kept", "--json", "--no-wait")
    assert result.code == 0, result.err
    waiting, dropped = (fork["id"] for fork in result.json())
    engine.wait(waiting, lambda r: r["state"] == "queued" and r["fork_step"] == 60)
    assert engine.cli("kill", dropped).code == 0
    engine.wait_state(dropped, "killed")
    stop(engine)
    engine.paths.store.unlink()
    assert engine.cli("engine", "rebuild").code == 0
    found = engine.run(waiting)
    assert (found["state"], found["parent_id"], found["fork_step"], found["step"]) == (
        "queued", parent, 60, 60), found
    assert engine.run(dropped)["state"] == "killed"  # killed in its queue: stays so
    assert engine.cli("ls", "-q", "-t", "kept").out.split() == [waiting, dropped]
    assert engine.cli("queue", "later", "--resume").code == 0
    ended = engine.wait_state(waiting, *TERMINAL)
    assert (ended["state"], ended["step"]) == ("finished", 90), ended
    assert sorted(engine.losses(waiting)) == list(range(60, 90))  # from its fork step on
