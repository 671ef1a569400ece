"""``traintop rm``: ended runs go for good (row, events, points, files); nothing else does.

Real daemon, workers, store and files throughout. A removal is checked from
every side a user sees: the CLI's list and lookups, the run directory and the
trash, the store's points, and the runs left alone (a fork keeps its own).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
from pathlib import Path

import pytest

from engine.client.client import EngineError
from engine.rundir.disk_space import disk_use
from engine.rundir.paths import read_json
from engine.server.removal import CHECKPOINTS_PREFIX
from engine.server.store import Store
from engine.server.store_metrics import RECLAIM_FLOOR
from tests.chaos.test_store_lock import store_locked
from tests.conftest import TERMINAL, Engine, wait_until
from tests.test_engine import start


def points_of(engine: Engine, run_id: str) -> int:
    """How many point rows the store holds for ``run_id``'s integer id (chunks and loose)."""
    db = sqlite3.connect(f"file:{engine.paths.store}?mode=ro", uri=True)
    try:
        (rid,) = db.execute("SELECT rid FROM runs WHERE id = ?", (run_id,)).fetchone()
        return sum(
            db.execute(f"SELECT count(*) FROM {table} WHERE run = ?", (rid,)).fetchone()[0]
            for table in ("chunks", "recent", "series")
        )
    finally:
        db.close()


def stored_rows(engine: Engine, run_id: str) -> tuple[int, int]:
    """The rows left of ``run_id``: its runs row and its events."""
    db = sqlite3.connect(f"file:{engine.paths.store}?mode=ro", uri=True)
    try:
        return (
            db.execute("SELECT count(*) FROM runs WHERE id = ?", (run_id,)).fetchone()[0],
            db.execute("SELECT count(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0],
        )
    finally:
        db.close()


def orphan_points(engine: Engine) -> int:
    """Point rows whose run is no longer in the store."""
    db = sqlite3.connect(f"file:{engine.paths.store}?mode=ro", uri=True)
    try:
        return sum(
            db.execute(
                f"SELECT count(*) FROM {table} WHERE run NOT IN (SELECT rid FROM runs)"
            ).fetchone()[0]
            for table in ("chunks", "recent", "series")
        )
    finally:
        db.close()


def rid_of(engine: Engine, run_id: str) -> int:
    db = sqlite3.connect(f"file:{engine.paths.store}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT rid FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
    finally:
        db.close()


def add_finished_run(store: Store, run_id: str, created: float) -> None:
    """A finished run's row, named as its id, as a restarted daemon finds it."""
    store.create_run({"id": run_id, "name": run_id, "workload": "synthetic", "config": {},
                      "state": "finished", "device": "cpu", "cwd": "/", "created": created,
                      "released": False}, "made by the test")


def trash_is_empty(engine: Engine) -> bool:
    return not any(engine.paths.trash.iterdir()) if engine.paths.trash.exists() else True


def test_rm_removes_an_ended_run_and_only_it(engine: Engine) -> None:
    parent = start(engine, "synthetic", "steps=40")
    other = start(engine, "synthetic", "steps=30")
    engine.wait_state(parent, *TERMINAL)
    engine.wait_state(other, *TERMINAL)
    child = engine.cli("fork", parent, "steps=60", "--json").json()["id"]
    engine.wait_state(child, *TERMINAL)
    kept = {run_id: engine.losses(run_id) for run_id in (other, child)}
    assert points_of(engine, parent) > 0

    dry = engine.cli("rm", "-n", parent, other)
    assert dry.code == 0, dry.err
    first, second, total = dry.out.splitlines()
    assert first.startswith(f"would remove {parent} (synthetic-1, finished): ")
    assert second.startswith(f"would remove {other} (synthetic-2, finished): ")
    assert total.startswith("2 runs would free ") and total.endswith("KiB")
    assert engine.paths.run_dir(parent).path.is_dir()
    assert engine.run(parent)["state"] == engine.run(other)["state"] == "finished"  # untouched

    result = engine.cli("rm", parent)
    assert result.code == 0, result.err
    line = result.out.strip()
    assert line.startswith(f"removed {parent} (synthetic-1, finished): ") and "KiB" in line
    assert " 0 B " not in line  # its checkpoints and spool took room

    with pytest.raises(EngineError, match="no run matches"):
        engine.run(parent)
    assert parent not in engine.cli("ls", "-q").out.split()
    assert stored_rows(engine, parent) == (0, 0)
    wait_until(lambda: orphan_points(engine) == 0, "the removed run's points were deleted")
    assert not engine.paths.run_dir(parent).path.exists()
    wait_until(lambda: trash_is_empty(engine), "the removed run's files were deleted")

    # The others, the fork included, keep every point; the fork still says where it came from.
    assert {run_id: engine.losses(run_id) for run_id in (other, child)} == kept
    assert engine.run(child)["parent_id"] == parent
    shown = engine.cli("show", child)
    assert shown.code == 0 and f"from {parent} at step 40 (since removed)" in shown.out

    again = engine.cli("rm", parent)  # gone: one line, exit 1
    assert again.code == 1 and again.err == f"traintop: no run matches {parent!r}\n"


def test_rm_refuses_a_live_run_and_a_typo_touches_nothing(engine: Engine) -> None:
    done = start(engine, "synthetic", "steps=5")
    live = start(engine, "synthetic", "steps=100000", "sleep=0.01")
    engine.wait_state(done, *TERMINAL)
    engine.wait_step(live, 1)

    typo = engine.cli("rm", done, "zzzzzz")
    assert typo.code == 1 and typo.err == "traintop: no run matches 'zzzzzz'\n"
    assert engine.run(done)["state"] == "finished"

    mixed = engine.cli("rm", live, done)  # the live run is refused, the ended one removed
    assert mixed.code == 1
    assert mixed.err == f"traintop: {live}: cannot remove a run that is running; kill it first\n"
    assert mixed.out.startswith(f"removed {done} ")
    assert engine.run(live)["state"] == "running"
    assert engine.paths.run_dir(live).path.is_dir()
    assert {r["id"] for r in engine.all_runs()} == {live}

    dry = engine.cli("rm", "-n", "-f", live)  # -f kills it first: said, not done
    assert dry.code == 0 and dry.out == f"would kill {live}, then remove it\n"
    assert engine.run(live)["state"] == "running"
    forced = engine.cli("rm", "-f", live)
    assert forced.code == 0, forced.err
    assert forced.out.startswith(f"removed {live} (synthetic-2, killed): ")
    assert engine.all_runs() == []


def test_a_run_still_needed_by_a_queued_run_is_kept(engine: Engine) -> None:
    parent = start(engine, "synthetic", "steps=20")
    engine.wait_state(parent, *TERMINAL)
    assert engine.cli("queue", "held", "--pause").code == 0
    fork = engine.cli("fork", parent, "steps=40", "--queue", "held", "--json",
                      "--no-wait").json()["id"]
    after = start(engine, "synthetic", "steps=5", "--after", parent, "--queue", "held",
                  "--no-wait")
    assert engine.run(fork)["state"] == engine.run(after)["state"] == "queued"

    # Each refusal names the run that still needs it; once nothing does, it goes.
    for waiting, why in ((fork, "will start from its checkpoint"),
                         (after, "is queued to start after it")):
        refused = engine.cli("rm", parent)
        assert refused.code == 1
        assert refused.err.startswith(f"traintop: cannot remove {parent}: ")
        assert waiting in refused.err and why in refused.err, refused.err
        assert engine.paths.run_dir(parent).path.is_dir() and points_of(engine, parent) > 0
        assert engine.cli("kill", waiting).code == 0
    assert engine.cli("rm", parent).code == 0


def test_a_removal_the_store_cannot_take_changes_nothing(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=20")
    engine.wait_state(run_id, *TERMINAL)
    before = engine.losses(run_id)
    with store_locked(engine.paths.store):
        result = engine.cli("rm", run_id)
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "locked" in lines[0], result.err
    # Its directory is back where it was, and every point is still there.
    assert engine.paths.run_dir(run_id).path.is_dir() and trash_is_empty(engine)
    assert engine.losses(run_id) == before
    assert engine.cli("rm", run_id).code == 0  # and once the store is free, it goes


def test_a_removal_cut_short_is_finished_by_the_next_daemon(engine: Engine) -> None:
    gone = start(engine, "synthetic", "steps=20")
    kept = start(engine, "synthetic", "steps=20")
    engine.wait_state(gone, *TERMINAL)
    engine.wait_state(kept, *TERMINAL)
    assert engine.cli("engine", "stop").code == 0
    # As a daemon killed right after step 1 of a removal leaves it: the directory moved
    # into the trash, the rows not yet deleted.
    engine.paths.trash.mkdir(mode=0o700)
    engine.paths.run_dir(gone).path.rename(engine.paths.trash / f"{gone}.1")

    assert engine.cli("ls", "-q").out.split() == [kept]  # the next daemon finishes it
    assert stored_rows(engine, gone) == (0, 0)
    wait_until(lambda: trash_is_empty(engine), "the cut-short removal's files were deleted")
    assert engine.run(kept)["state"] == "finished" and len(engine.losses(kept)) == 20



def test_rm_checkpoints_keeps_the_run_and_what_a_live_fork_goes_on_from(engine: Engine) -> None:
    base = start(engine, "synthetic", "steps=300", "sleep=0.01", "--name", "base")
    engine.wait_step(base, 10)
    ended = engine.cli("fork", base, "--json").json()["id"]  # its own checkpoint file
    engine.wait_step(base, engine.run(ended)["fork_step"] + 10)
    # Another, that a fork still training goes on from (its retry would, again).
    live = engine.cli("fork", base, "steps=100000", "--json").json()["id"]
    assert engine.cli("kill", ended).code == 0
    assert engine.wait_state(base, *TERMINAL)["state"] == "finished"  # and final.pt
    engine.wait_state(ended, *TERMINAL)
    checkpoints = engine.paths.run_dir(base).checkpoints
    needed = Path(read_json(engine.paths.run_dir(live).launch)["resume_from"])
    assert needed.parent == checkpoints
    spare = [p for p in checkpoints.iterdir() if p != needed]
    assert spare and needed.is_file()
    points = engine.points(base)
    refused = engine.cli("rm", "--checkpoints", live)  # not ended: refused, as rm is
    assert refused.code == 1 and "kill it first" in refused.err, refused.err

    status = engine.cli("engine", "status")  # where the disk goes, and what frees it
    assert "(checkpoints of ended runs " in status.out and "rm --checkpoints" in status.out
    # A checkpoint under two names (as a failed run's kept for its fork) frees its bytes once.
    freed = disk_use(*spare)
    os.link(spare[0], spare[0].with_name("step-999999.pt"))
    spare.append(spare[0].with_name("step-999999.pt"))
    asked = engine.call("remove", run=base, checkpoints=True, dry_run=True)
    assert asked["freed"] == freed
    dry = engine.cli("rm", "-c", "-n", base)
    assert dry.code == 0 and dry.out.startswith(f"would remove the checkpoints of {base} ")
    assert f"kept {needed.name}: fork {live} goes on from it" in dry.out, dry.out
    assert all(p.is_file() for p in spare)  # a dry run removes nothing
    done = engine.cli("rm", "--checkpoints", base)
    assert done.code == 0 and f"kept {needed.name}" in done.out, done.out
    assert sorted(checkpoints.iterdir()) == [needed]
    wait_until(lambda: trash_is_empty(engine), "the checkpoints were deleted")
    # The run is all there but its checkpoints: points, events, the table.
    assert engine.points(base) == points
    assert engine.run(base)["checkpoints_removed"] is not None
    assert "checkpoints removed" in engine.run(base)["events"][-1]["reason"]
    assert "its checkpoints removed" in engine.cli("show", base).out
    forked = engine.cli("fork", base, "lr=0.1", "steps=600")  # from the checkpoint that went
    assert forked.code == 1 and len(forked.err.strip().splitlines()) == 1
    assert "its checkpoints were removed" in forked.err and "restart" in forked.err

    assert engine.cli("kill", live).code == 0  # once the fork has ended, its file goes too
    engine.wait_state(live, *TERMINAL)
    assert engine.cli("rm", "-c", base, ended).code == 0
    assert not list(checkpoints.iterdir())
    assert engine.cli("engine", "status", "--json").json()["disk"]["ended_checkpoints"] == 0
    again = engine.cli("rm", "-c", base)
    assert again.out.strip() == f"{base} (base, finished) has no checkpoint to remove"
    # A store made again from the run directories knows it too.
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "rebuild").code == 0
    assert engine.run(base)["checkpoints_removed"] is not None
    assert engine.points(base) == points
    assert "its checkpoints were removed" in engine.cli("fork", base, "lr=0.1", "steps=600").err


def test_a_fork_still_training_keeps_what_it_started_from_when_its_parent_goes(
    engine: Engine,
) -> None:
    parent = start(engine, "synthetic", "steps=40", "--name", "base")
    engine.wait_state(parent, *TERMINAL)
    child = engine.cli("fork", parent, "steps=100000", "sleep=0.01", "--retries", "1",
                       "--json").json()
    begun = int(child["fork_step"])
    run = engine.wait_process(child["id"], begun + 5)
    assert engine.cli("rm", parent).code == 0  # its final.pt, which the fork started from
    assert not engine.paths.run_dir(parent).path.exists()
    os.killpg(int(run["pgid"]), signal.SIGKILL)  # the fork dies: retried from there
    engine.wait(child["id"], lambda r: r["retried"] == 1 and r["state"] == "running")
    said = [e["reason"] for e in engine.run(child["id"])["events"]]
    assert any(r.startswith("retry 1 of 1") and r.endswith(f"from its checkpoint at step {begun}")
               for r in said), said
    assert engine.cli("kill", child["id"]).code == 0


def test_a_failed_fork_keeps_what_it_resumes_from_when_its_parent_goes(
    engine: Engine,
) -> None:
    parent = start(engine, "synthetic", "steps=40", "--name", "base")
    engine.wait_state(parent, *TERMINAL)
    fork = engine.cli("fork", parent, "steps=100", "fail_at=45", "--json").json()["id"]
    assert engine.wait_state(fork, *TERMINAL)["state"] == "failed"  # no checkpoint of its own
    checkpoints = engine.paths.run_dir(parent).checkpoints
    final = checkpoints / "final.pt"
    assert Path(read_json(engine.paths.run_dir(fork).launch)["resume_from"]) == final
    others = [p for p in checkpoints.iterdir() if p != final]
    # Removing only the checkpoints keeps the one 'resume' goes on from, and says so.
    dry = engine.call("remove", run=parent, checkpoints=True, dry_run=True)
    assert dry["kept"] == [{"file": "final.pt", "run": fork}]
    assert dry["freed"] == disk_use(*others)
    said = engine.cli("rm", "-c", parent)
    assert said.code == 0 and f"kept final.pt: fork {fork} goes on from it" in said.out, said.out
    assert sorted(checkpoints.iterdir()) == [final]
    # Removing the parent links it into the fork's own checkpoints: the disk gets nothing
    # back for it, and the dry run says what the removal then frees.
    freed = disk_use(engine.paths.run_dir(parent).path) - disk_use(final)
    assert engine.call("remove", run=parent, dry_run=True)["freed"] == freed
    assert engine.call("remove", run=parent)["freed"] == freed
    kept = engine.paths.run_dir(fork).checkpoints / "step-40.pt"
    assert kept.is_file() and not engine.paths.run_dir(parent).path.exists()
    generation = engine.run(fork)["generation"]
    assert engine.cli("resume", fork).code == 0  # goes on from step 40 and fails again
    engine.wait(fork, lambda r: r["generation"] > generation and r["state"] in TERMINAL)
    said = [e["reason"] for e in engine.run(fork)["events"]]
    assert "resumed from its checkpoint at step 40" in said, said


def test_a_checkpoint_removal_the_store_cannot_take_changes_nothing(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=20")
    engine.wait_state(run_id, *TERMINAL)
    final = engine.paths.run_dir(run_id).checkpoints / "final.pt"
    assert final.is_file()
    with store_locked(engine.paths.store):
        result = engine.cli("rm", "--checkpoints", run_id)
    assert result.code == 1 and "locked" in result.err, result.err
    assert final.is_file() and trash_is_empty(engine)  # put back
    assert engine.run(run_id)["checkpoints_removed"] is None
    # A daemon stopped before it deleted them: the next one does, and keeps the run.
    assert engine.cli("engine", "stop").code == 0
    cut_short = engine.paths.trash / f"{CHECKPOINTS_PREFIX}{run_id}.1"
    cut_short.mkdir(parents=True)
    final.rename(cut_short / final.name)
    assert engine.cli("ls", "-q").out.split() == [run_id]
    wait_until(lambda: trash_is_empty(engine), "the cut-short removal's files were deleted")
    assert engine.run(run_id)["state"] == "finished" and len(engine.losses(run_id)) == 20


def test_a_new_run_given_a_removed_runs_number_charts_its_own_points(engine: Engine) -> None:
    # SQLite gives a new row the highest integer id plus one: removing the newest run
    # frees its number for the next. Nothing cached under that number may outlive it.
    def view(run_id: str) -> object:
        return engine.call("series", run=run_id, key="loss", buckets=40, smoothing=0.6)

    old = start(engine, "synthetic", "steps=2100", "seed=1")  # over two sealed chunks
    engine.wait_state(old, *TERMINAL)
    old_view, number = view(old), rid_of(engine, old)
    assert engine.cli("rm", old).code == 0
    wait_until(lambda: orphan_points(engine) == 0, "the removed run's points were deleted")
    new = start(engine, "synthetic", "steps=2100", "seed=2")
    engine.wait_state(new, *TERMINAL)
    assert rid_of(engine, new) == number
    seen = view(new)
    assert engine.cli("engine", "stop").code == 0
    assert view(new) == seen != old_view  # as a daemon that never knew the old run sees it


def store_pages(engine: Engine) -> tuple[int, int, int]:
    """The store's pages, its free pages, and its auto_vacuum mode (2: incremental)."""
    db = sqlite3.connect(f"file:{engine.paths.store}?mode=ro", uri=True)
    try:
        pages, free, mode = (int(db.execute(f"PRAGMA {p}").fetchone()[0])
                             for p in ("page_count", "freelist_count", "auto_vacuum"))
        return pages, free, mode
    finally:
        db.close()


def add_long_runs(store: Store, count: int, points: int) -> None:
    """``count`` finished runs ``cmpt00``... of ``points`` sealed loss points each (noisy,
    as real losses are: a smooth curve packs into a few bytes a point)."""
    noise = random.Random(0)
    for n in range(count):
        run_id = f"cmpt{n:02d}"
        add_finished_run(store, run_id, created=1.7e9 + n)
        for first in range(0, points, 100_000):
            store.add_metrics(run_id, [[s, "loss", 1.0 / (s + 1) + noise.random(), 1.7e9 + s]
                                       for s in range(first, min(first + 100_000, points))],
                              0, None)
        store.seal_metrics(run_id)


def test_the_engine_gives_removed_runs_room_back_to_the_disk_while_it_runs(
    engine: Engine,
) -> None:
    paths = engine.paths
    paths.home.mkdir(mode=0o700, parents=True)
    store = Store(paths.store)
    add_long_runs(store, 2, 300_000)
    store.close()
    kept = engine.losses("cmpt01")  # the engine starts
    pages, free, mode = store_pages(engine)
    assert mode == 2 and free < RECLAIM_FLOOR  # a new store has the page map it needs
    assert engine.cli("rm", "cmpt00").code == 0

    def given_back() -> bool:
        return orphan_points(engine) == 0 and store_pages(engine)[1] <= RECLAIM_FLOOR

    wait_until(given_back, "the removed run's pages went back to the disk", timeout=60)
    # about half the store was the removed run's: all of it but the floor is gone, and
    # the file is cut once the moved pages are written back from the WAL
    assert store_pages(engine)[0] < pages * 0.75
    wait_until(lambda: paths.store.stat().st_size < pages * 4096 * 0.75, "the file is cut")
    assert engine.losses("cmpt01") == kept and engine.run("cmpt01")["state"] == "finished"


def test_each_slice_gives_back_the_pages_asked_and_stops_at_the_floor(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    add_long_runs(store, 2, 300_000)
    store.remove_run("cmpt00")
    while store.purge_removed():
        pass

    def free() -> int:
        return int(store.db.execute("PRAGMA freelist_count").fetchone()[0])

    before = free()
    assert before > RECLAIM_FLOOR + 200
    assert store.reclaim_free(pages=100) and free() == before - 100  # all 100, not one
    while store.reclaim_free(pages=100):
        pass
    assert free() == RECLAIM_FLOOR and not store.reclaim_free()
    assert store.points.count(store.rid("cmpt01")) == 300_000
    store.close()


def test_compact_gives_back_the_room_of_removed_runs_points(engine: Engine) -> None:
    paths = engine.paths
    paths.home.mkdir(mode=0o700, parents=True)
    store = Store(paths.store)
    add_long_runs(store, 6, 20_000)  # 6 x 20,000 points, then five of them removed
    # As a store made before the page map was kept: the engine cannot shrink it itself.
    store.db.execute("PRAGMA auto_vacuum=NONE")
    store.db.execute("VACUUM")
    store.close()
    kept = engine.losses("cmpt05")
    assert engine.cli("rm", *(f"cmpt{n:02d}" for n in range(5))).code == 0
    wait_until(lambda: orphan_points(engine) == 0, "the removed runs' points were deleted")

    disk = engine.cli("engine", "status", "--json").json()["disk"]
    assert disk["store_unused"] > 0 and disk["store_gives_back"] == 0  # it keeps the room
    running = engine.cli("engine", "compact")  # the engine holds the store
    assert running.code == 1 and "stop it first" in running.err
    assert engine.cli("engine", "stop").code == 0
    before = paths.store.stat().st_size
    result = engine.cli("engine", "compact")
    assert result.code == 0, result.err
    assert result.out.startswith(f"compacted {paths.store}: ")
    assert paths.store.stat().st_size < before / 2
    assert engine.losses("cmpt05") == kept  # a new engine, every point of the kept run
    assert store_pages(engine)[2] == 2  # and from now on it gives such room back itself


def test_ls_size_shows_what_each_runs_files_take(engine: Engine) -> None:
    paths = engine.paths
    paths.home.mkdir(mode=0o700, parents=True)
    paths.runs.mkdir(mode=0o700)
    store = Store(paths.store)
    for n, mib in enumerate((1, 3, 2)):
        run_id = f"size{n:02d}"
        add_finished_run(store, run_id, created=1.7e9 + n)
        checkpoints = paths.run_dir(run_id).checkpoints
        checkpoints.mkdir(parents=True, mode=0o700)
        (checkpoints / "final.pt").write_bytes(os.urandom(mib << 20))  # not sparse
    # A file under two names (as a fork's kept checkpoint is) takes its bytes once.
    os.link(paths.run_dir("size01").checkpoints / "final.pt",
            paths.run_dir("size01").checkpoints / "step-7.pt")
    store.close()

    largest = engine.cli("ls", "--sort", "size", "-r", "-q")
    assert largest.out.split() == ["size01", "size02", "size00"]
    header, *rows, footer = engine.cli("ls", "--size").out.splitlines()
    assert header.split()[-1] == "SIZE"
    assert [row.split()[-2:] for row in rows] == [["1.0", "MiB"], ["3.0", "MiB"], ["2.0", "MiB"]]
    assert footer == "(6.0 MiB of files)"
    listed = engine.cli("ls", "--json", "--size", "size01").json()
    assert listed[0]["size"] >= 3 << 20
    status = engine.cli("engine", "status")
    assert status.code == 0, status.err
    (disk,) = [line for line in status.out.splitlines() if line.startswith("disk: ")]
    assert disk.startswith("disk: store ") and ", run files 6.0 MiB (" in disk
    assert "(checkpoints of ended runs 6.0 MiB: 'traintop rm --checkpoints' frees" in disk
    assert disk.endswith(" free")
    figures = engine.cli("engine", "status", "--json").json()["disk"]
    assert 6 << 20 <= figures["runs"] < 6.1 * (1 << 20)  # (a filesystem may round up)
    assert figures["ended_checkpoints"] == sum(disk_use(paths.run_dir(f"size{n:02d}").checkpoints)
                                               for n in range(3))
    assert figures["store"] > 0 and figures["free"] > 0
    shown = engine.cli("show", "size01").out
    assert f"{paths.run_dir('size01').path}  (3.0 MiB of files)" in shown
    assert engine.run("size01")["size"] is None  # a poll (wait, kill) walks no directory
