"""The SQLite store: runs, their events and metrics.

One writer (the daemon) in WAL mode, so readers never block it. The schema
version lives in ``PRAGMA user_version``; ``MIGRATIONS[i]`` takes a store
from version ``i`` to ``i + 1`` and every step runs in its own transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.rundir.spool_records import Metric
from engine.server.chunks import CHUNK_POINTS
from engine.server.points import SCHEMA as points_schema
from engine.server.points import Points

log = logging.getLogger("traintop.store")

MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE runs (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        workload     TEXT NOT NULL,
        config       TEXT NOT NULL,
        state        TEXT NOT NULL,
        device       TEXT NOT NULL,
        cwd          TEXT NOT NULL,
        total_steps  INTEGER,
        step         INTEGER NOT NULL DEFAULT 0,
        parent_id    TEXT REFERENCES runs(id),
        fork_step    INTEGER,
        created      REAL NOT NULL,
        started      REAL,
        ended        REAL,
        exit_code    INTEGER,
        exit_reason  TEXT,
        stderr_tail  TEXT,
        generation   INTEGER NOT NULL DEFAULT 0,
        spool_offset INTEGER NOT NULL DEFAULT 0,
        control_seq  INTEGER NOT NULL DEFAULT 0,
        checkpoint   TEXT,
        released     INTEGER NOT NULL DEFAULT 0,
        pid          INTEGER,
        pgid         INTEGER,
        pid_start    REAL,
        kill_grace   REAL
    );
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        run_id  TEXT NOT NULL REFERENCES runs(id),
        time    REAL NOT NULL,
        state   TEXT NOT NULL,
        reason  TEXT NOT NULL
    );
    CREATE INDEX events_run ON events(run_id, id);
    CREATE TABLE metrics (
        run_id  TEXT NOT NULL,
        key     TEXT NOT NULL,
        step    INTEGER NOT NULL,
        value   REAL,
        time    REAL NOT NULL
    );
    CREATE INDEX metrics_run_key_step ON metrics(run_id, key, step);
    """,
    # 1 -> 2: telemetry samples (host, GPUs, per-run usage), one JSON document each.
    """
    CREATE TABLE telemetry (
        time  REAL NOT NULL,
        data  TEXT NOT NULL
    );
    CREATE INDEX telemetry_time ON telemetry(time);
    """,
]

def _to_v3(db: sqlite3.Connection) -> None:
    """2 -> 3: integer run ids, metric keys by integer id, points packed in chunks.

    Every point of the v2 ``metrics`` table is kept, in step order within each
    series (v2 read them that way); times keep microseconds.
    """
    db.execute(_RUNS_V3)
    columns = ", ".join(_V3_RUN_FIELDS)
    db.execute(
        f"INSERT INTO runs_v3 ({columns}) SELECT {columns} FROM runs ORDER BY created, id"
    )
    db.execute("DROP TABLE runs")
    db.execute("ALTER TABLE runs_v3 RENAME TO runs")
    for statement in points_schema.split(";"):
        db.execute(statement)
    writer = Points(db)
    rids = {str(i): int(r) for i, r in db.execute("SELECT id, rid FROM runs")}
    for run_id, key in db.execute("SELECT DISTINCT run_id, key FROM metrics").fetchall():
        rid = rids.get(run_id)
        if rid is None:
            log.warning("dropping the points of %r: no such run", run_id)
            continue
        rows = db.execute(
            "SELECT step, ?, value, time FROM metrics WHERE run_id = ? AND key = ? "
            "ORDER BY step, rowid",
            (key, run_id, key),
        )
        while batch := rows.fetchmany(16 * CHUNK_POINTS):
            writer.add(rid, batch)
    for rid in rids.values():
        writer.seal(rid)
    db.execute("DROP TABLE metrics")


_RUNS_V3 = """
CREATE TABLE runs_v3 (
    rid          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL UNIQUE,
    workload     TEXT NOT NULL,
    config       TEXT NOT NULL,
    state        TEXT NOT NULL,
    device       TEXT NOT NULL,
    cwd          TEXT NOT NULL,
    total_steps  INTEGER,
    step         INTEGER NOT NULL DEFAULT 0,
    parent_id    TEXT REFERENCES runs(id),
    fork_step    INTEGER,
    created      REAL NOT NULL,
    started      REAL,
    ended        REAL,
    exit_code    INTEGER,
    exit_reason  TEXT,
    stderr_tail  TEXT,
    generation   INTEGER NOT NULL DEFAULT 0,
    spool_offset INTEGER NOT NULL DEFAULT 0,
    control_seq  INTEGER NOT NULL DEFAULT 0,
    checkpoint   TEXT,
    released     INTEGER NOT NULL DEFAULT 0,
    pid          INTEGER,
    pgid         INTEGER,
    pid_start    REAL,
    kill_grace   REAL
)
"""

MIGRATIONS.append(_to_v3)

# 3 -> 4: what ingestion skipped (malformed spool records, bad points), counted per run.
MIGRATIONS.append(
    """
    ALTER TABLE runs ADD COLUMN skipped_records INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN skipped_points INTEGER NOT NULL DEFAULT 0
    """
)

SCHEMA_VERSION = len(MIGRATIONS)

# The columns of the runs table in schemas 2 and 3 (the migration to 3 copies them).
_V3_RUN_FIELDS = [
    "id",
    "name",
    "workload",
    "config",
    "state",
    "device",
    "cwd",
    "total_steps",
    "step",
    "parent_id",
    "fork_step",
    "created",
    "started",
    "ended",
    "exit_code",
    "exit_reason",
    "stderr_tail",
    "generation",
    "spool_offset",
    "control_seq",
    "checkpoint",
    "released",
    "pid",
    "pgid",
    "pid_start",
    "kill_grace",
]
RUN_FIELDS = [*_V3_RUN_FIELDS, "skipped_records", "skipped_points"]


# How long a write waits for another process's lock on the store before it fails.
BUSY_TIMEOUT = 5.0
# Once the store is known to be locked, how long a caller checks for the lock before it
# gives up until its next turn (the daemon goes on answering rather than wait 5 s).
RECHECK_WAIT = 0.05
# SQLite's primary result codes for a store that cannot be written now but may be later.
_UNAVAILABLE_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}
)


class StoreError(Exception):
    """The store cannot be used (e.g. written by a newer traintop)."""


def store_unavailable(exc: BaseException) -> bool:
    """Is ``exc`` a store that cannot be written for now (locked, full), so worth a retry?"""
    code = getattr(exc, "sqlite_errorcode", None)
    # Extended codes (SQLITE_IOERR_WRITE...) carry the primary one in their low byte.
    return isinstance(exc, sqlite3.OperationalError) and isinstance(code, int) and (
        code & 0xFF in _UNAVAILABLE_CODES
    )




def _row_to_run(row: sqlite3.Row) -> dict[str, Any]:
    run = dict(row)
    run.pop("rid", None)  # the integer id stays inside the store
    run["config"] = json.loads(run["config"])
    run["released"] = bool(run["released"])
    return run


class Store:
    """All reads and writes of ``store.sqlite``.

    The daemon holds one writer; ``Store.reader`` opens read-only connections
    for threads that answer queries, which WAL lets run beside the writer.
    """

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.set_busy_timeout(BUSY_TIMEOUT)
        if readonly:
            self.db.execute("PRAGMA query_only=1")
        else:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.migrate()
        self.points = Points(self.db)
        self._rids: dict[str, int] = {}
        # Why the store cannot be written, from a failed write until one succeeds.
        self.unavailable: str | None = None
        self._changes_at_failure = 0

    @classmethod
    def reader(cls, path: Path) -> Store:
        """A read-only connection to a store that a writer has already migrated."""
        return cls(path, readonly=True)

    def close(self) -> None:
        self.db.close()

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a statement waits for another connection's lock before it fails."""
        self.db.execute(f"PRAGMA busy_timeout={round(seconds * 1000)}")

    def write_failed(self, exc: BaseException) -> bool:
        """Note a failed write: True if the store is unavailable (locked, full), not a bug.

        Said in the log when it starts, not at every retry (see ``write_succeeded``).
        """
        if not store_unavailable(exc):
            return False
        if self.unavailable is None:
            log.warning(
                "the store cannot be written (%s); metrics wait in the spools and are "
                "stored once it can", exc,
            )
        self.unavailable = str(exc)
        self._changes_at_failure = self.db.total_changes
        return True

    def write_succeeded(self) -> None:
        """After writes that raised nothing: if rows changed since the store was unavailable,
        it is back (an empty transaction proves nothing on a full disk)."""
        if self.unavailable is not None and self.db.total_changes > self._changes_at_failure:
            log.warning("the store can be written again; storing what the spools hold")
            self.unavailable = None

    def may_write(self) -> bool:
        """False while the store is known to be locked by another process and still is.

        A caller skips its writes until its next turn then, rather than wait on it.
        """
        if self.unavailable is None:
            return True
        self.set_busy_timeout(RECHECK_WAIT)
        try:
            with self.transaction():
                pass  # an empty transaction writes nothing
        except sqlite3.OperationalError as exc:
            if not store_unavailable(exc):
                raise
            return False
        finally:
            self.set_busy_timeout(BUSY_TIMEOUT)
        return True

    # -- schema ---------------------------------------------------------------

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION, one explicit step at a time."""
        current = self.version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this traintop "
                f"understands ({SCHEMA_VERSION}); upgrade traintop"
            )
        for version in range(current, SCHEMA_VERSION):
            if version:
                log.info("migrating %s from schema %d to %d", self.path, version, version + 1)
            step = MIGRATIONS[version]
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if callable(step):
                    step(self.db)
                else:
                    for statement in step.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={version + 1}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        if current and current < SCHEMA_VERSION:
            self._compact_if_sparse()

    def _compact_if_sparse(self) -> None:
        """VACUUM once a migration has left most of the file free (old tables dropped)."""
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        if pages and free > pages // 4:
            self.db.execute("VACUUM")

    # -- runs -----------------------------------------------------------------

    def create_run(self, run: dict[str, Any], reason: str) -> None:
        """Insert a new run and its first event in one transaction."""
        row = {**run, "config": json.dumps(run["config"]), "released": int(run["released"])}
        columns = [f for f in RUN_FIELDS if f in row]
        with self.transaction():
            self.db.execute(
                f"INSERT INTO runs ({', '.join(columns)}) "
                f"VALUES ({', '.join(':' + c for c in columns)})",
                row,
            )
            self._event(run["id"], run["state"], reason, run["created"])

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of one run."""
        unknown = set(fields) - set(RUN_FIELDS)
        if unknown:
            raise KeyError(f"unknown run fields: {sorted(unknown)}")
        if "config" in fields:
            fields["config"] = json.dumps(fields["config"])
        if "released" in fields:
            fields["released"] = int(fields["released"])
        assignments = ", ".join(f"{k} = :{k}" for k in fields)
        self.db.execute(f"UPDATE runs SET {assignments} WHERE id = :_id", {**fields, "_id": run_id})

    def set_state(
        self, run_id: str, state: str, reason: str, when: float | None = None, **fields: Any
    ) -> None:
        """Change a run's state and record the transition as an event, atomically.

        The event is dated ``when`` (default now): a store filled ahead of time,
        such as the snapshot tests' fixed history, gives its own.
        """
        with self.transaction():
            self.update_run(run_id, state=state, **fields)
            self._event(run_id, state, reason, time.time() if when is None else when)

    def note(self, run_id: str, reason: str) -> None:
        """Add an event that changes nothing (its state is the run's current one)."""
        self.db.execute(
            "INSERT INTO events (run_id, time, state, reason) "
            "SELECT id, ?, state, ? FROM runs WHERE id = ?",
            (time.time(), reason, run_id),
        )

    def delete_run(self, run_id: str) -> None:
        """Forget a run that never started (its start failed half-way): row and events."""
        with self.transaction():
            self.db.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        self._rids.pop(run_id, None)

    def _event(self, run_id: str, state: str, reason: str, when: float) -> None:
        self.db.execute(
            "INSERT INTO events (run_id, time, state, reason) VALUES (?, ?, ?, ?)",
            (run_id, when, state, reason),
        )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _row_to_run(row) if row else None

    def runs_after(self, rid: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` runs with an integer id above ``rid``, in creation order."""
        rows = self.db.execute(
            "SELECT * FROM runs WHERE rid > ? ORDER BY rid LIMIT ?", (rid, limit)
        ).fetchall()
        return [(int(r["rid"]), _row_to_run(r)) for r in rows]

    def state_counts(self) -> dict[str, int]:
        """How many runs are in each state."""
        rows = self.db.execute("SELECT state, count(*) FROM runs GROUP BY state")
        return {str(state): int(n) for state, n in rows}

    def runs_in_states(self, states: Sequence[str]) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in states)
        rows = self.db.execute(f"SELECT * FROM runs WHERE state IN ({marks})", tuple(states))
        return [_row_to_run(r) for r in rows.fetchall()]

    def children(self, run_id: str) -> list[str]:
        rows = self.db.execute("SELECT id FROM runs WHERE parent_id = ? ORDER BY rid", (run_id,))
        return [str(r[0]) for r in rows]

    def match_runs(self, ref: str) -> list[dict[str, Any]]:
        """Runs whose name is ``ref``, else whose id starts with ``ref``."""
        rows = self.db.execute("SELECT * FROM runs WHERE name = ?", (ref,)).fetchall()
        if not rows:
            escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self.db.execute(
                "SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY id", (escaped + "%",)
            ).fetchall()
        return [_row_to_run(r) for r in rows]

    def name_taken(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE name = ?", (name,)).fetchone() is not None

    def events(self, run_id: str, last: int = -1) -> list[dict[str, Any]]:
        """A run's state changes, oldest first; with ``last``, only the latest ones."""
        rows = self.db.execute(
            "SELECT * FROM (SELECT id, time, state, reason FROM events WHERE run_id = ? "
            "ORDER BY id DESC LIMIT ?) ORDER BY id",
            (run_id, last),
        )
        return [{"time": r["time"], "state": r["state"], "reason": r["reason"]} for r in rows]

    def event_count(self, run_id: str) -> int:
        row = self.db.execute("SELECT count(*) FROM events WHERE run_id = ?", (run_id,))
        return int(row.fetchone()[0])

    def rid(self, run_id: str) -> int:
        """The integer id of a run; KeyError if there is no such run."""
        rid = self._rids.get(run_id)
        if rid is None:
            row = self.db.execute("SELECT rid FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            rid = self._rids[run_id] = int(row[0])
        return rid

    # -- metrics --------------------------------------------------------------

    def add_metrics(
        self,
        run_id: str,
        points: Iterable[Sequence[Any]],
        spool_offset: int,
        step: int | None,
        skipped: tuple[int, int] = (0, 0),
    ) -> None:
        """Store a batch of ``(step, key, value, time)`` and the spool offset it ends at.

        Both go in one transaction, so a batch is stored exactly once even if
        the daemon dies between reading the spool and writing here. ``skipped``
        (malformed records, bad points) is added to the run's counts in the same
        transaction, so a spool read twice does not count its faults twice.
        """
        rid = self.rid(run_id)
        records, bad_points = skipped
        try:
            with self.transaction():
                self.points.add(rid, points)
                if step is None:
                    self.update_run(run_id, spool_offset=spool_offset)
                else:
                    self.update_run(run_id, spool_offset=spool_offset, step=step)
                if records or bad_points:
                    self.db.execute(
                        "UPDATE runs SET skipped_records = skipped_records + ?, "
                        "skipped_points = skipped_points + ? WHERE rid = ?",
                        (records, bad_points, rid),
                    )
        except BaseException:
            self.points.forget()
            raise

    def seal_metrics(self, run_id: str) -> None:
        """Pack a run's last loose points into chunks: it will log no more for now."""
        try:
            with self.transaction():
                self.points.seal(self.rid(run_id))
        except BaseException:
            self.points.forget()
            raise

    def metrics(
        self,
        run_id: str,
        key: str | None = None,
        after_step: int | None = None,
        start: tuple[str, int] | None = None,
        limit: int = 1 << 62,
    ) -> tuple[list[Metric], tuple[str, int] | None]:
        """A page of a run's points ``(step, key, value, time)``, by key, in logging order.

        ``start`` is the cursor a previous page returned; the second item is the
        cursor of the next page, None after the last one.
        """
        return self.points.page(self.rid(run_id), key, start, after_step, limit)

    def all_metrics(self, run_id: str) -> list[Metric]:
        """Every point of a run (tests and small runs; the daemon pages)."""
        points, cursor = self.metrics(run_id)
        while cursor is not None:
            more, cursor = self.metrics(run_id, start=cursor)
            points += more
        return points

    def last_metrics(self, run_id: str, key: str, count: int) -> list[Metric]:
        """The latest ``count`` points of one key, oldest first."""
        return self.points.tail(self.rid(run_id), key, count)

    def metric_count(self, run_id: str) -> int:
        return self.points.count(self.rid(run_id))

    def last_values(self, run_id: str) -> dict[str, float]:
        """The latest value of every key a run logged (kept with the points, so O(keys))."""
        return self.points.last_values(self.rid(run_id))

    # -- telemetry ------------------------------------------------------------

    def add_telemetry(self, when: float, sample: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO telemetry (time, data) VALUES (?, ?)",
            (when, json.dumps(sample, allow_nan=False)),
        )

    def telemetry(self, since: float, until: float | None = None) -> list[dict[str, Any]]:
        """Stored samples with ``since <= time < until``, oldest first."""
        rows = self.db.execute(
            "SELECT data FROM telemetry WHERE time >= ? AND time < ? ORDER BY time",
            (since, math.inf if until is None else until),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def prune_telemetry(self, before: float) -> int:
        """Drop samples older than ``before``; returns how many."""
        return self.db.execute("DELETE FROM telemetry WHERE time < ?", (before,)).rowcount

    # -- plumbing -------------------------------------------------------------

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run several reads against one state of the store (a reader's view of a request)."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")


def store_upgrade(path: Path) -> str | None:
    """What opening the store at ``path`` will migrate, said for a person; None if nothing."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()
    if not 0 < version < SCHEMA_VERSION:
        return None
    size = path.stat().st_size / 1e6
    return f"upgrading the store ({size:.0f} MB) from schema {version} to {SCHEMA_VERSION}"


class _Transaction:
    """``with store.transaction():`` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type:
            # SQLite itself rolls back on some errors (disk full, I/O): only end an open one.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            return
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error:
            # A COMMIT that fails (busy, disk full) leaves the transaction open, and
            # every later BEGIN would fail on it: end it, so the caller can retry.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
