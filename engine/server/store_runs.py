"""The store's run rows and their events: every state change is an event row.

A run's row holds what the daemon knows of it (config, state, step, process,
spool offset); the ``events`` table is its history, each transition written in
the same transaction as the row it changes.
"""

from __future__ import annotations

import difflib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

from engine.common.runs import RunState
from engine.server.store_connection import StoreConnection
from engine.server.store_schema import RUN_FIELDS

# Columns that hold a JSON object, or NULL for none.
_JSON_OR_NULL = ("early_stop", "checkpoint_every", "search")


def row_to_run(row: sqlite3.Row) -> dict[str, Any]:
    """A ``runs`` row as the daemon passes runs around: config decoded, no integer id."""
    run = dict(row)
    run.pop("rid", None)  # the integer id stays inside the store
    run["config"] = json.loads(run["config"])
    run["released"] = bool(run["released"])
    run["tags"] = json.loads(run["tags"]) if run.get("tags") else []
    for column in _JSON_OR_NULL:
        run[column] = json.loads(run[column]) if run.get(column) else None
    return run


def run_to_row(fields: dict[str, Any]) -> dict[str, Any]:
    """Run fields as the ``runs`` table holds them (``row_to_run`` undone): config, tags
    the early-stop rule and checkpoint interval as JSON (none: NULL), released as 0 or 1."""
    row = dict(fields)
    if "config" in row:
        row["config"] = json.dumps(row["config"])
    if "tags" in row:
        row["tags"] = json.dumps(row["tags"]) if row["tags"] else None
    if "released" in row:
        row["released"] = int(row["released"])
    for column in _JSON_OR_NULL:
        if column in row:
            row[column] = json.dumps(row[column]) if row[column] else None
    return row


class RunRows(StoreConnection):
    """Reads and writes of the ``runs`` and ``events`` tables."""

    def create_run(self, run: dict[str, Any], reason: str) -> None:
        """Insert a new run and its first event in one transaction.

        Its integer id is above every run's and every stored series': the points of a
        removed run are deleted a slice at a time after its row (``purge_removed``), and
        must never be taken for a new run's.
        """
        row = run_to_row(run)
        columns = [f for f in RUN_FIELDS if f in row]
        with self.transaction():
            self.db.execute(
                f"INSERT INTO runs (rid, {', '.join(columns)}) VALUES ("
                "1 + max(coalesce((SELECT max(rid) FROM runs), 0), "
                "coalesce((SELECT max(run) FROM series), 0)), "
                f"{', '.join(':' + c for c in columns)})",
                row,
            )
            self._event(run["id"], run["state"], reason, run["created"])

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of one run."""
        unknown = set(fields) - set(RUN_FIELDS)
        if unknown:
            raise KeyError(f"unknown run fields: {sorted(unknown)}")
        assignments = ", ".join(f"{k} = :{k}" for k in fields)
        self._write_held_first()
        self.db.execute(f"UPDATE runs SET {assignments} WHERE id = :_id",
                        {**run_to_row(fields), "_id": run_id})

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
        self._write_held_first()
        self.db.execute(
            "INSERT INTO events (run_id, time, state, reason) "
            "SELECT id, ?, state, ? FROM runs WHERE id = ?",
            (time.time(), reason, run_id),
        )

    def record_rung(self, sweep: str, step: int, run_id: str, value: float) -> None:
        """Keep a run's value at a rung (or PBT round) of its sweep (again: the newer value)."""
        self._write_held_first()
        self.db.execute("INSERT OR REPLACE INTO rungs (sweep, step, run, value) "
                        "VALUES (?, ?, ?, ?)", (sweep, step, run_id, value))

    def rung_values(self, sweep: str, step: int) -> dict[str, float]:
        """Each run's value at a rung (or PBT round) of its sweep."""
        rows = self.db.execute("SELECT run, value FROM rungs WHERE sweep = ? AND step = ?",
                               (sweep, step))
        return {str(run): float(value) for run, value in rows}

    def open_rounds(self, sweep: str) -> list[int]:
        """The rounds of a PBT sweep with values but not yet judged, first first (rounds
        are judged in order: those past the last judged, read by the rungs' key)."""
        rows = self.db.execute(
            "SELECT DISTINCT step FROM rungs WHERE sweep = ? AND step > "
            "(SELECT COALESCE(MAX(step), -1) FROM pbt_rounds WHERE sweep = ?) ORDER BY step",
            (sweep, sweep))
        return [int(step) for (step,) in rows]

    def last_round(self, sweep: str) -> int | None:
        """The latest round of a PBT sweep judged, or None before its first."""
        (step,) = self.db.execute("SELECT MAX(step) FROM pbt_rounds WHERE sweep = ?",
                                  (sweep,)).fetchone()
        return None if step is None else int(step)

    def close_round(self, sweep: str, step: int) -> None:
        """Mark a PBT round judged."""
        self._write_held_first()
        self.db.execute("INSERT OR IGNORE INTO pbt_rounds (sweep, step) VALUES (?, ?)",
                        (sweep, step))

    def round_missing(self, sweep: str, step: int) -> Iterator[dict[str, Any]]:
        """The runs of a sweep still queued, starting or running with no value at a round
        yet: id, state, step and total, read as they are asked for (a PBT round asks
        at every value, and stops at the first that is on its way)."""
        training = (RunState.QUEUED, RunState.STARTING, RunState.RUNNING)
        rows = self.db.execute(
            "SELECT id, state, step, total_steps FROM runs WHERE sweep = ? "
            "AND state IN (?, ?, ?) AND id NOT IN "
            "(SELECT run FROM rungs WHERE sweep = ? AND step = ?)",
            (sweep, *training, sweep, step))
        return (dict(r) for r in rows)

    def rungs_passed(self, run_id: str) -> set[int]:
        """The rungs a run's value was recorded at."""
        rows = self.db.execute("SELECT step FROM rungs WHERE run = ?", (run_id,))
        return {int(step) for (step,) in rows}

    def _event(self, run_id: str, state: str, reason: str, when: float) -> None:
        self.db.execute(
            "INSERT INTO events (run_id, time, state, reason) VALUES (?, ?, ?, ?)",
            (run_id, when, state, reason),
        )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row_to_run(row) if row else None

    def runs_after(self, rid: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` runs with an integer id above ``rid``, in creation order."""
        rows = self.db.execute(
            "SELECT * FROM runs WHERE rid > ? ORDER BY rid LIMIT ?", (rid, limit)
        ).fetchall()
        return [(int(r["rid"]), row_to_run(r)) for r in rows]

    def state_counts(self) -> dict[str, int]:
        """How many runs are in each state."""
        rows = self.db.execute("SELECT state, count(*) FROM runs GROUP BY state")
        return {str(state): int(n) for state, n in rows}

    def runs_in_states(self, states: Sequence[str]) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in states)
        rows = self.db.execute(f"SELECT * FROM runs WHERE state IN ({marks})", tuple(states))
        return [row_to_run(r) for r in rows.fetchall()]

    def sweep_runs(self, sweep: str) -> list[dict[str, Any]]:
        """Every run of a sweep, in the order made (read through the sweep's index)."""
        rows = self.db.execute("SELECT * FROM runs WHERE sweep = ? ORDER BY rid", (sweep,))
        return [row_to_run(r) for r in rows.fetchall()]

    def sweep_size(self, sweep: str) -> int:
        """How many runs a sweep has (0: no sweep of that name)."""
        row = self.db.execute("SELECT COUNT(*) FROM runs WHERE sweep = ?", (sweep,)).fetchone()
        return int(row[0])

    def set_search(self, sweep: str, rule: dict[str, Any]) -> None:
        """Put a new search rule on every searched run of a sweep."""
        self._write_held_first()
        self.db.execute("UPDATE runs SET search = ? WHERE sweep = ? AND search IS NOT NULL",
                        (json.dumps(rule), sweep))

    def searched_sweeps(self) -> list[str]:
        """The sweeps whose runs have a search rule."""
        rows = self.db.execute(
            "SELECT DISTINCT sweep FROM runs WHERE search IS NOT NULL AND sweep IS NOT NULL")
        return [str(sweep) for (sweep,) in rows]

    def devices_in_state(self, state: str) -> dict[str, str]:
        """The device of each run in ``state``, by run id (no config decoded)."""
        rows = self.db.execute("SELECT id, device FROM runs WHERE state = ?", (state,))
        return {str(run_id): str(device) for run_id, device in rows}

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
        return [row_to_run(r) for r in rows]

    def names_near(self, ref: str) -> list[tuple[str, str]]:
        """The (name, id) of up to three runs whose names are closest to ``ref`` (a
        misspelt name's hint), the closest first."""
        named = dict(self.db.execute("SELECT name, id FROM runs").fetchall())
        return [(name, named[name]) for name in difflib.get_close_matches(ref, named, n=3)]

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
