"""The store's schema: its migrations, one step per version, and how they are run.

The schema version lives in ``PRAGMA user_version``; ``MIGRATIONS[i]`` takes a
store from version ``i`` to ``i + 1`` and every step runs in its own transaction.
A store written by a newer traintop is refused, never changed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from engine.server.chunks import CHUNK_POINTS
from engine.server.points import SCHEMA as points_schema
from engine.server.points import Points

log = logging.getLogger("traintop.store")


class StoreError(Exception):
    """The store cannot be used (e.g. written by a newer traintop)."""


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

# 4 -> 5: the divergence watch per run: its factor (NULL: the run opted out; runs
# from before it get the default of the time, 10) and why it tripped, if it has.
MIGRATIONS.append(
    """
    ALTER TABLE runs ADD COLUMN divergence_factor REAL DEFAULT 10.0;
    ALTER TABLE runs ADD COLUMN diverged TEXT
    """
)

# 5 -> 6: queues. A queued run waits in its queue (FIFO by ``queue_pos`` within its
# ``priority``) for a free slot and, with ``gpus`` > 0, room on a GPU; ``after_id`` is a
# run it waits for; ``launch_from`` the checkpoint it starts from once its turn comes;
# ``awaiting`` is 'checkpoint' while a fork waits for its parent's. ``gpu_peak`` is the
# most GPU memory the run was seen to hold (bytes), for placing its forks and
# restarts. ``sweep`` names the sweep a run belongs to.
MIGRATIONS.append(
    """
    ALTER TABLE runs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN queue_pos REAL;
    ALTER TABLE runs ADD COLUMN after_id TEXT;
    ALTER TABLE runs ADD COLUMN gpus REAL;
    ALTER TABLE runs ADD COLUMN launch_from TEXT;
    ALTER TABLE runs ADD COLUMN awaiting TEXT;
    ALTER TABLE runs ADD COLUMN gpu_peak INTEGER;
    ALTER TABLE runs ADD COLUMN sweep TEXT;
    CREATE INDEX runs_state ON runs(state);
    CREATE TABLE queues (
        name              TEXT PRIMARY KEY,
        parallel          INTEGER,
        paused            INTEGER NOT NULL DEFAULT 0,
        pause_on_failure  INTEGER NOT NULL DEFAULT 0,
        reason            TEXT,
        created           REAL NOT NULL
    );
    UPDATE runs SET awaiting = 'checkpoint' WHERE state = 'queued'
    """
)

# 6 -> 7: an index that covers each chunk's lowest value, so a run's best value of a
# metric (``list_runs`` with ``best``) is read from the index alone: for 500 runs of
# 40,000 points, ~7 ms against ~70 ms reading each chunk's row. ~20 bytes a chunk.
MIGRATIONS.append("CREATE INDEX chunks_best ON chunks(run, kid, vmin)")

# 7 -> 8: what the user says of a run: its tags (a JSON list of words) and a note.
MIGRATIONS.append(
    """
    ALTER TABLE runs ADD COLUMN tags TEXT;
    ALTER TABLE runs ADD COLUMN note TEXT
    """
)

# 8 -> 9: early stopping. A sweep's run keeps its rule (JSON: grace, eta, metric, mode)
# and, once stopped by it, why; each rung's values, by sweep, are what later runs are
# judged against.
MIGRATIONS.append(
    """
    ALTER TABLE runs ADD COLUMN early_stop TEXT;
    ALTER TABLE runs ADD COLUMN stopped_early TEXT;
    CREATE TABLE rungs (
        sweep  TEXT NOT NULL,
        step   INTEGER NOT NULL,
        run    TEXT NOT NULL,
        value  REAL NOT NULL,
        PRIMARY KEY (sweep, step, run)
    )
    """
)

# 9 -> 10: population based training. A PBT sweep's rule is kept in ``early_stop`` (the
# sweep's scheduler; its ``interval`` tells it from ASHA's) and its values at each round
# in ``rungs``; a round judged is kept here, so a restarted daemon never judges one twice.
# A round asks at each value which of its sweep's runs have yet to bring one: the index
# finds a sweep's runs without reading the others (500 in a sweep: ~0.1 ms, not ~1 ms).
MIGRATIONS.append(
    """
    CREATE TABLE pbt_rounds (
        sweep  TEXT NOT NULL,
        step   INTEGER NOT NULL,
        PRIMARY KEY (sweep, step)
    );
    CREATE INDEX runs_sweep ON runs(sweep)
    """
)

# 10 -> 11: fault tolerance. How often a run checkpoints on its own (JSON, see
# ``engine.common.checkpoint_every``), how many times the engine takes it up again from
# its newest checkpoint when it fails, and how many of those it has used.
MIGRATIONS.append(
    """
    ALTER TABLE runs ADD COLUMN checkpoint_every TEXT;
    ALTER TABLE runs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN retried INTEGER NOT NULL DEFAULT 0
    """
)

# 11 -> 12: when a run's checkpoints were removed (``traintop rm --checkpoints``), its
# points kept: a fork or resume of it is then refused for that reason.
MIGRATIONS.append("ALTER TABLE runs ADD COLUMN checkpoints_removed REAL")

# 12 -> 13: a searched sweep (TPE). Each of its runs keeps the sweep's search rule (JSON,
# see ``engine.common.search``): the daemon makes the sweep's next trial from it when one
# of them ends, and a rebuilt store has it from launch.json.
MIGRATIONS.append("ALTER TABLE runs ADD COLUMN search TEXT")

# 13 -> 14: the run a restart (``traintop restart``) is a new run of, as a fork keeps its
# parent: what it was, since its name says only -r2.
MIGRATIONS.append("ALTER TABLE runs ADD COLUMN restart_of TEXT")

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
RUN_FIELDS = [
    *_V3_RUN_FIELDS, "skipped_records", "skipped_points", "divergence_factor", "diverged",
    "queue", "priority", "queue_pos", "after_id", "gpus", "launch_from", "awaiting",
    "gpu_peak", "sweep", "tags", "note", "early_stop", "stopped_early", "checkpoint_every",
    "retries", "retried", "checkpoints_removed", "search", "restart_of",
]


def schema_version(db: sqlite3.Connection) -> int:
    """The schema version a store's file says it has."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the store at ``path`` (open as ``db``) to SCHEMA_VERSION, one step at a time."""
    current = schema_version(db)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {current}, newer than this traintop "
            f"understands ({SCHEMA_VERSION}); upgrade traintop"
        )
    for version in range(current, SCHEMA_VERSION):
        if version:
            log.info("migrating %s from schema %d to %d", path, version, version + 1)
        step = MIGRATIONS[version]
        db.execute("BEGIN IMMEDIATE")
        try:
            if callable(step):
                step(db)
            else:
                for statement in step.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version={version + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    if current and current < SCHEMA_VERSION:
        _compact_if_sparse(db)


def _compact_if_sparse(db: sqlite3.Connection) -> None:
    """VACUUM once a migration has left most of the file free (old tables dropped)."""
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    if pages and free > pages // 4:
        db.execute("VACUUM")


def store_upgrade(path: Path) -> str | None:
    """What opening the store at ``path`` will migrate, said for a person; None if nothing."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = schema_version(db)
    finally:
        db.close()
    if not 0 < version < SCHEMA_VERSION:
        return None
    size = path.stat().st_size / 1e6
    return f"upgrading the store ({size:.0f} MB) from schema {version} to {SCHEMA_VERSION}"

