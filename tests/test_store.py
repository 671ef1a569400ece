"""The SQLite store: schema versions, exactly-once metric batches, run lookup."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

import pytest

from engine.server.points import Points
from engine.server.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Store,
    StoreError,
    store_unavailable,
)
from engine.server.store_metrics import MetricBatch


def _run(run_id: str, name: str) -> dict[str, object]:
    return {
        "id": run_id,
        "name": name,
        "workload": "synthetic",
        "config": {"lr": 0.1},
        "state": "queued",
        "device": "cpu",
        "cwd": "/",
        "created": time.time(),
        "released": False,
    }


def test_new_store_is_at_the_current_version_in_wal_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    assert store.version == SCHEMA_VERSION
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    reopened = Store(tmp_path / "s.sqlite")  # migrating again is a no-op
    assert reopened.version == SCHEMA_VERSION


def test_a_store_from_a_newer_traintop_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_metric_batches_move_the_spool_offset_in_the_same_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    store.add_metrics("abc234", [[0, "loss", 1.5, 1.0], [1, "loss", float("nan"), 2.0]], 120, 2)
    run = store.get_run("abc234")
    assert run is not None and run["spool_offset"] == 120 and run["step"] == 2
    first, second = store.all_metrics("abc234")
    assert first == (0, "loss", 1.5, 1.0)
    assert second[:2] == (1, "loss") and math.isnan(second[2]) and second[3] == 2.0
    with pytest.raises(ValueError):  # a bad point rolls the whole batch back
        store.add_metrics("abc234", [[2, "loss", 1.0, 3.0], [3, "loss", "x", 4.0]], 999, 4)
    run = store.get_run("abc234")
    assert run is not None and run["spool_offset"] == 120
    assert store.metric_count("abc234") == 2


def test_batches_of_many_runs_are_one_commit_and_a_bad_one_is_undone_alone(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.sqlite")
    for run_id in ("abc234", "abd567", "abe890"):
        store.create_run(_run(run_id, run_id), "created")
    store.add_metrics("abd567", [[0, "loss", 1.0, 1.0]], 40, 1)
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    errors = store.add_metric_batches([
        MetricBatch("abc234", [[0, "loss", 2.0, 1.0], [1, "loss", 1.5, 2.0]], 100, 2),
        MetricBatch("abd567", [[1, "loss", 0.5, 2.0], [2, "loss", "x", 3.0]], 90, 3),
        MetricBatch("abe890", [[0, "acc", 0.25, 1.0]], 50, 1, (2, 1)),
    ])
    store.db.set_trace_callback(None)
    assert [type(e) for e in errors] == [type(None), ValueError, type(None)]
    assert statements.count("COMMIT") == 1
    assert [p[2] for p in store.all_metrics("abc234")] == [2.0, 1.5]
    assert [p[2] for p in store.all_metrics("abd567")] == [1.0]  # its batch is undone whole
    assert [p[2] for p in store.all_metrics("abe890")] == [0.25]
    runs = {r: store.get_run(r) or {} for r in ("abc234", "abd567", "abe890")}
    assert [runs[r]["spool_offset"] for r in runs] == [100, 40, 50]
    assert (runs["abe890"]["skipped_records"], runs["abe890"]["skipped_points"]) == (2, 1)


def test_a_locked_store_takes_none_of_the_batches_and_says_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    store.set_busy_timeout(0.05)
    other = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as raised:
        store.add_metric_batches([MetricBatch("abc234", [[0, "loss", 1.0, 1.0]], 10, 1)])
    assert store_unavailable(raised.value)
    other.execute("ROLLBACK")
    assert store.metric_count("abc234") == 0
    store.add_metric_batches([MetricBatch("abc234", [[0, "loss", 1.0, 1.0]], 10, 1)])
    assert store.metric_count("abc234") == 1 and (store.get_run("abc234") or {})["step"] == 1


def test_writes_held_back_go_before_any_later_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    held = [MetricBatch("abc234", [[0, "loss", 1.0, 1.0]], 10, 1)]

    def store_held() -> None:
        batches, held[:] = list(held), []
        if batches:
            store.add_metric_batches(batches)
            store.note("abc234", "points stored")

    store.before_write = store_held
    store.set_state("abc234", "running", "worker is training")
    assert [e["reason"] for e in store.events("abc234")][1:] == [
        "points stored", "worker is training"]
    assert store.metric_count("abc234") == 1
    store.update_run("abc234", step=5)  # with nothing held, nothing more happens
    assert store.event_count("abc234") == 3


def test_runs_match_by_name_then_id_prefix(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "first"), "created")
    store.create_run(_run("abd567", "abc"), "created")
    assert [r["id"] for r in store.match_runs("abc")] == ["abd567"]  # the name wins
    assert [r["id"] for r in store.match_runs("ab")] == ["abc234", "abd567"]
    assert store.match_runs("a%") == []  # LIKE wildcards are escaped
    store.set_state("abc234", "starting", "started by user")
    assert [e["state"] for e in store.events("abc234")] == ["queued", "starting"]
    store.set_state("abc234", "running", "worker is training")
    assert [e["state"] for e in store.events("abc234", 2)] == ["starting", "running"]
    assert store.event_count("abc234") == 3


def test_a_version_1_store_migrates_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version=1;")
    db.execute(
        "INSERT INTO runs (id, name, workload, config, state, device, cwd, created) "
        "VALUES ('abc234', 'old', 'synthetic', '{}', 'finished', 'cpu', '/', 1.0)"
    )
    db.commit()
    db.close()
    store = Store(path)
    assert store.version == SCHEMA_VERSION
    run = store.get_run("abc234")
    assert run is not None and run["name"] == "old"
    store.add_telemetry(5.0, {"time": 5.0})
    assert store.telemetry(0.0) == [{"time": 5.0}]


def test_metric_pages_cover_every_point_once_in_key_then_logging_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    points = [[s, k, float(s), 1.0] for s in range(10) for k in ("b", "a")]
    points += [[4, "a", 99.0, 2.0]]  # a step logged twice
    store.add_metrics("abc234", points, 1, 10)
    seen, cursor = [], None
    while True:
        page, cursor = store.metrics("abc234", start=cursor, limit=3)
        assert 0 < len(page) <= 3
        seen += page
        if cursor is None:
            break
    expected = [p for k in ("a", "b") for p in points if p[1] == k]
    assert [list(p) for p in seen] == expected


def test_nan_and_infinities_come_back_as_logged_before_and_after_sealing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.create_run(_run("abc234", "a"), "created")
    values = [math.nan, math.inf, -math.inf, 0.5, math.nan]
    store.add_metrics("abc234", [[i, "loss", v, 1.0 + i] for i, v in enumerate(values)], 99, 5)
    for _ in ("loose rows", "a sealed chunk"):
        got = [value for _step, _key, value, _time in store.all_metrics("abc234")]
        assert repr(got) == repr(values)  # nan, inf, -inf: each as logged
        assert math.isnan(store.last_values("abc234")["loss"])
        store.seal_metrics("abc234")


def test_a_version_4_store_gains_the_divergence_watch_and_keeps_runs_and_points(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:4]:  # the schema as traintop wrote it before the watch
        if callable(step):
            step(db)
        else:
            db.executescript(step)
    db.execute("PRAGMA user_version=4")
    db.execute(
        "INSERT INTO runs (id, name, workload, config, state, device, cwd, created, step) "
        "VALUES ('abc234', 'old', 'synthetic', '{\"lr\": 0.1}', 'finished', 'cpu', '/', 1.0, 3)"
    )
    rid = db.execute("SELECT rid FROM runs WHERE id = 'abc234'").fetchone()[0]
    points = [(s, "loss", 1.0 / (s + 1), 10.0 + s) for s in range(3)]
    Points(db).add(rid, points)
    db.close()
    store = Store(path)
    assert store.version == SCHEMA_VERSION == 14
    # 7: the index a run's best values are read from.
    indexes = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "chunks_best" in indexes
    run = store.get_run("abc234")
    assert run is not None and run["name"] == "old" and run["config"] == {"lr": 0.1}
    assert run["tags"] == [] and run["note"] is None  # 8: none yet
    assert run["early_stop"] is None and run["stopped_early"] is None  # 9: no rule
    assert store.open_rounds("any") == []  # 10: no PBT round yet
    # 11: no checkpoints of its own, no retries
    assert run["checkpoint_every"] is None and run["retries"] == run["retried"] == 0
    assert run["checkpoints_removed"] is None  # 12: its checkpoints are there
    assert run["search"] is None  # 13: not a searched sweep's
    assert run["restart_of"] is None  # 14: a restart of no run
    assert run["divergence_factor"] == 10.0 and run["diverged"] is None
    assert store.all_metrics("abc234") == points


def test_a_removed_runs_points_go_in_slices_and_its_number_is_not_reused_meanwhile(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.sqlite")
    losses = {name: [[s, "loss", 1.0 / (s + 1 + n), float(s)] for s in range(5000)]
              for n, name in enumerate(("keep11", "gone22"))}
    for name, points in losses.items():
        store.create_run(_run(name, name), "created")
        store.add_metrics(name, points, 0, None)
        store.seal_metrics(name)
    gone = store.rid("gone22")  # the newest: SQLite alone would give its number again
    assert store.remove_run("gone22") == gone and store.get_run("gone22") is None
    store.create_run(_run("new333", "new"), "created")  # while its points are still there
    assert store.rid("new333") > gone
    store.add_metrics("new333", [[0, "loss", 7.0, 0.0]], 0, None)

    slices = 0
    while store.purge_removed(chunks=2):  # 5,000 points: 5 chunks, so three slices
        slices += 1
    assert slices == 2 and not store.purge_removed()
    assert store.points.removed_runs() == []
    left = store.db.execute("SELECT count(*) FROM chunks WHERE run = ?", (gone,)).fetchone()
    assert left[0] == 0
    assert store.all_metrics("keep11") == [tuple(p) for p in losses["keep11"]]
    assert store.all_metrics("new333") == [(0, "loss", 7.0, 0.0)]
    assert store.remove_run("gone22") is None  # gone: nothing to remove

    # Many small runs removed at once go together, not one a call.
    for name in ("tiny01", "tiny02", "tiny03"):
        store.create_run(_run(name, name), "created")
        store.add_metrics(name, [[s, "loss", 1.0, float(s)] for s in range(10)], 0, None)
        store.remove_run(name)
    assert not store.purge_removed() and store.points.removed_runs() == []
