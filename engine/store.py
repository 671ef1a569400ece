"""The SQLite store: runs, their events and metrics.

One writer (the daemon) in WAL mode, so readers never block it. The schema
version lives in ``PRAGMA user_version``; ``MIGRATIONS[i]`` takes a store
from version ``i`` to ``i + 1`` and every step runs in its own transaction.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

MIGRATIONS: list[str] = [
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

SCHEMA_VERSION = len(MIGRATIONS)

RUN_FIELDS = [
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


class StoreError(Exception):
    """The store cannot be used (e.g. written by a newer traintop)."""


def _row_to_run(row: sqlite3.Row) -> dict[str, Any]:
    run = dict(row)
    run["config"] = json.loads(run["config"])
    run["released"] = bool(run["released"])
    return run


class Store:
    """All reads and writes of ``store.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.migrate()

    def close(self) -> None:
        self.db.close()

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
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={version + 1}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

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

    def set_state(self, run_id: str, state: str, reason: str, **fields: Any) -> None:
        """Change a run's state and record the transition as an event, atomically."""
        now = time.time()
        with self.transaction():
            self.update_run(run_id, state=state, **fields)
            self._event(run_id, state, reason, now)

    def _event(self, run_id: str, state: str, reason: str, when: float) -> None:
        self.db.execute(
            "INSERT INTO events (run_id, time, state, reason) VALUES (?, ?, ?, ?)",
            (run_id, when, state, reason),
        )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _row_to_run(row) if row else None

    def list_runs(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM runs ORDER BY created, id").fetchall()
        return [_row_to_run(r) for r in rows]

    def runs_in_states(self, states: Sequence[str]) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in states)
        rows = self.db.execute(f"SELECT * FROM runs WHERE state IN ({marks})", tuple(states))
        return [_row_to_run(r) for r in rows.fetchall()]

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

    def events(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT time, state, reason FROM events WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [dict(r) for r in rows.fetchall()]

    # -- metrics --------------------------------------------------------------

    def add_metrics(
        self, run_id: str, points: Iterable[Sequence[Any]], spool_offset: int, step: int | None
    ) -> None:
        """Store a batch of ``(step, key, value, time)`` and the spool offset it ends at.

        Both go in one transaction, so a batch is stored exactly once even if
        the daemon dies between reading the spool and writing here.
        """
        rows = [(run_id, str(k), int(s), _finite_or_none(v), float(t)) for s, k, v, t in points]
        with self.transaction():
            self.db.executemany(
                "INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            if step is None:
                self.update_run(run_id, spool_offset=spool_offset)
            else:
                self.update_run(run_id, spool_offset=spool_offset, step=step)

    def metrics(
        self,
        run_id: str,
        key: str | None = None,
        after_step: int | None = None,
        last: int | None = None,
        after: tuple[str, int] | None = None,
        limit: int | None = None,
    ) -> list[tuple[int, str, float | None, float]]:
        """Points of one run as ``(step, key, value, time)``, ordered by key and step.

        With ``last`` (and a ``key``), only the latest ``last`` points. ``after``
        (a key and a step) and ``limit`` page through the rest.
        """
        if last is not None and key is not None:
            rows = self.db.execute(
                "SELECT step, key, value, time FROM metrics WHERE run_id = ? AND key = ? "
                "ORDER BY step DESC, rowid DESC LIMIT ?",
                (run_id, key, last),
            ).fetchall()
            return [tuple(r) for r in reversed(rows)]
        sql = "SELECT step, key, value, time FROM metrics WHERE run_id = ?"
        args: list[Any] = [run_id]
        if key is not None:
            sql += " AND key = ?"
            args.append(key)
        if after_step is not None:
            sql += " AND step > ?"
            args.append(after_step)
        if after is not None:
            sql += " AND (key > ? OR (key = ? AND step > ?))"
            args += [after[0], after[0], after[1]]
        sql += " ORDER BY key, step, rowid"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        points = [tuple(r) for r in self.db.execute(sql, args).fetchall()]
        if limit is not None and len(points) == limit:
            # Never split one (key, step) across pages: the next page starts after it.
            tail = (points[-1][1], points[-1][0])
            points = [p for p in points if (p[1], p[0]) != tail] or points
        return points

    def metric_count(self, run_id: str) -> int:
        row = self.db.execute("SELECT count(*) FROM metrics WHERE run_id = ?", (run_id,))
        return int(row.fetchone()[0])

    def last_values(self, run_id: str) -> dict[str, float | None]:
        """The latest value of every key a run logged."""
        rows = self.db.execute(
            "SELECT key, value FROM metrics m WHERE run_id = ? AND rowid = "
            "(SELECT max(rowid) FROM metrics WHERE run_id = m.run_id AND key = m.key) ",
            (run_id,),
        ).fetchall()
        return {r["key"]: r["value"] for r in rows}

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


def _finite_or_none(value: Any) -> float | None:
    number = float(value) if value is not None else math.nan
    return number if not math.isnan(number) else None


class _Transaction:
    """``with store.transaction():`` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
