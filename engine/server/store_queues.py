"""The store's queues: each queue's limit and whether it is paused, and the queued runs.

A queue exists once a run is put in it or it is set (``traintop queue NAME``);
a queue with no row has the defaults (no limit of its own, not paused), except
``default``, whose limit the scheduler takes from the machine.
"""

from __future__ import annotations

import time
from typing import Any

from engine.server.store_runs import RunRows

QUEUE_FIELDS = ("parallel", "paused", "pause_on_failure", "reason")


class QueueRows(RunRows):
    """Reads and writes of the ``queues`` table, and the runs that wait in queues."""

    def queues(self) -> dict[str, dict[str, Any]]:
        """Every queue with a row, by name."""
        rows = self.db.execute("SELECT * FROM queues ORDER BY name").fetchall()
        return {str(r["name"]): _queue(r) for r in rows}

    def set_queue(self, name: str, **fields: Any) -> None:
        """Create queue ``name`` or change its fields (``QUEUE_FIELDS``)."""
        unknown = set(fields) - set(QUEUE_FIELDS)
        if unknown:
            raise KeyError(f"unknown queue fields: {sorted(unknown)}")
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO queues (name, created) VALUES (?, ?)", (name, time.time())
            )
            if fields:
                assignments = ", ".join(f"{k} = :{k}" for k in fields)
                sql = f"UPDATE queues SET {assignments} WHERE name = :_name"
                self.db.execute(sql, {**fields, "_name": name})

    def waiting_runs(self) -> list[dict[str, Any]]:
        """The queued runs in the order they start: higher priority first, then FIFO.

        Only what ordering and placing them takes (``WAITING_FIELDS``, nothing decoded):
        the queue looks at every one at each pass, and hundreds may wait; a run about to
        start is read whole (``get_run``).
        """
        rows = self.db.execute(
            f"SELECT {', '.join(WAITING_FIELDS)} FROM runs WHERE state = 'queued' "
            "ORDER BY priority DESC, queue_pos, rid"
        ).fetchall()
        return [dict(r) for r in rows]

    def last_queue_pos(self) -> float:
        """The largest position any run has had in a queue (0 when none has)."""
        row = self.db.execute("SELECT max(queue_pos) FROM runs").fetchone()
        return float(row[0] or 0.0)


# What the scheduler and the queue listing read of a waiting run.
WAITING_FIELDS = ("id", "name", "queue", "priority", "queue_pos", "after_id", "awaiting",
                  "parent_id", "gpus", "device", "gpu_peak")


def _queue(row: Any) -> dict[str, Any]:
    queue = dict(row)
    queue["paused"] = bool(queue["paused"])
    queue["pause_on_failure"] = bool(queue["pause_on_failure"])
    return queue
