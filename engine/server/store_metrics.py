"""The store's time series: a run's metric points and the telemetry samples.

Points are packed in chunks by ``points.Points``; here they are tied to their
run, and a batch is stored in one transaction with the spool offset it ends at.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from engine.rundir.spool_records import Metric
from engine.server.store_connection import store_unavailable
from engine.server.store_queues import QueueRows

# Chunks of a removed run's points deleted per transaction (each up to 1,024 points):
# ~10 ms of the daemon's time, so a run of 20 M points goes over some seconds of ticks.
PURGE_CHUNKS = 128
# Free pages given back to the disk per transaction once removed runs' points are gone:
# 2 MB at a time, about 10 ms of the daemon's (bench/remove.py).
RECLAIM_PAGES = 512
# Free pages left for new points: a megabyte is not worth moving pages for.
RECLAIM_FLOOR = 256


class MetricBatch(NamedTuple):
    """Points one run logged, and where in its spool they end (see ``add_metrics``)."""

    run_id: str
    points: Iterable[Sequence[Any]]
    spool_offset: int
    step: int | None
    skipped: tuple[int, int] = (0, 0)


class MetricRows(QueueRows):
    """Reads and writes of metric points and telemetry samples.

    Built on the run rows: a batch of points moves its run's spool offset and step.
    """

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
        [error] = self.add_metric_batches([
            MetricBatch(run_id, points, spool_offset, step, skipped)])
        if error is not None:
            raise error

    def add_metric_batches(self, batches: Sequence[MetricBatch]) -> list[Exception | None]:
        """Store several runs' batches in one transaction: one commit, not one a run.

        Each goes in with its spool offset, step and skipped counts (see
        ``add_metrics``), on a savepoint of its own: a batch that fails (a bug, not
        a store that cannot be written) is undone alone, and its error is returned
        in its place (None for those stored). A store that cannot be written
        (locked, full) stores none of them, and raises.
        """
        results: list[Exception | None] = []
        try:
            with self.transaction():
                for batch in batches:
                    self.db.execute("SAVEPOINT batch")
                    try:
                        self._add_batch(batch)
                    except Exception as exc:
                        if store_unavailable(exc) or not self.db.in_transaction:
                            raise
                        self.db.execute("ROLLBACK TO batch")
                        self.points.forget()
                        results.append(exc)
                    else:
                        results.append(None)
                    self.db.execute("RELEASE batch")
        except BaseException:
            self.points.forget()
            raise
        return results

    def _add_batch(self, batch: MetricBatch) -> None:
        rid = self.rid(batch.run_id)
        self.points.add(rid, batch.points)
        if batch.step is None:
            self.update_run(batch.run_id, spool_offset=batch.spool_offset)
        else:
            self.update_run(batch.run_id, spool_offset=batch.spool_offset, step=batch.step)
        records, bad_points = batch.skipped
        if records or bad_points:
            self.db.execute(
                "UPDATE runs SET skipped_records = skipped_records + ?, "
                "skipped_points = skipped_points + ? WHERE rid = ?",
                (records, bad_points, rid),
            )

    def seal_metrics(self, run_id: str) -> None:
        """Pack a run's last loose points into chunks: it will log no more for now."""
        try:
            with self.transaction():
                self.points.seal(self.rid(run_id))
        except BaseException:
            self.points.forget()
            raise

    def rewind_metrics(self, run_id: str, step: int) -> int:
        """Drop a run's points at ``step`` and after: it goes on from a checkpoint there,
        and logs them again (bit for bit, as a resume replays). Returns how many went.
        Cheap when there are none: the series' last steps say so."""
        rid = self.rid(run_id)
        last = self.db.execute("SELECT max(last_step) FROM series WHERE run = ?",
                               (rid,)).fetchone()[0]
        if last is None or last < step:
            return 0
        try:
            with self.transaction():
                return self.points.rewind(rid, step)
        except BaseException:
            self.points.forget()
            raise

    def remove_run(self, run_id: str) -> int | None:
        """Delete a run's row and events, all or nothing: it is gone for every reader.
        Its points go after, a slice at a time (``purge_removed``): a run of millions
        of points must not hold the store for the whole of it.

        Returns the integer id the run had; None if there was no such run.
        """
        row = self.db.execute("SELECT rid FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        with self.transaction():
            self.db.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        self._rids.pop(run_id, None)
        self._purging = True
        return int(row[0])

    def purge_removed(self, chunks: int = PURGE_CHUNKS) -> bool:
        """Delete about ``chunks`` chunks of removed runs' points (a run's loose points
        count as one more), in one transaction; True while more are left. Cheap once
        there is nothing to do."""
        if self._purging is False:
            return False
        removed = self.points.removed_runs()
        if not removed:
            self._purging = False
            self._reclaiming = None  # what their points took may go back to the disk
            return False
        left, more = chunks, False
        try:
            with self.transaction():
                for n, run in enumerate(removed):
                    deleted, done = self.points.purge(run, left)
                    left -= deleted + 1
                    if not done or left <= 0:
                        more = not done or n + 1 < len(removed)
                        break
        except BaseException:
            self.points.forget()
            raise
        return more

    def reclaim_free(self, pages: int = RECLAIM_PAGES) -> bool:
        """Give the disk back up to ``pages`` of the store's free pages (those beyond
        RECLAIM_FLOOR), in one transaction; True while more are left. Only a store with
        a page map (``auto_vacuum`` incremental) can; SQLite moves pages from the file's
        end into free ones and cuts the file there. Cheap once there is nothing to do."""
        if self._reclaiming is False:
            return False
        incremental = int(self.db.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2
        spare = int(self.db.execute("PRAGMA freelist_count").fetchone()[0]) - RECLAIM_FLOOR
        if not incremental or spare <= 0:
            if self._reclaiming:  # pages were moved: the file is cut once they leave the WAL
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._reclaiming = False
            return False
        self._write_held_first()
        # Its own transaction. Through execute() each call would move one page only
        # (the module steps the statement once); a script steps it to the end.
        self.db.executescript(f"PRAGMA incremental_vacuum({min(pages, spare)});")
        self._reclaiming = True
        return spare > pages

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

    def last_step(self, run_id: str) -> int | None:
        """The highest step the run logged a point at (None: none)."""
        return self.points.last_step(self.rid(run_id))

    def last_values(self, run_id: str) -> dict[str, float]:
        """The latest value of every key a run logged (kept with the points, so O(keys))."""
        return self.points.last_values(self.rid(run_id))

    def value_summary(self, run_id: str) -> dict[str, dict[str, float]]:
        """A run's lowest (``best``) and highest finite value of each key, and its
        latest (``last``), as a listing with ``best`` and ``highest`` says them."""
        rid = self.rid(run_id)
        return {
            "best": self.points.lowest_values([rid]).get(rid, {}),
            "highest": self.points.highest_values([rid]).get(rid, {}),
            "last": self.points.last_values(rid),
        }

    # -- telemetry ------------------------------------------------------------

    def add_telemetry(self, when: float, sample: dict[str, Any]) -> None:
        self._write_held_first()
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
        self._write_held_first()
        return self.db.execute("DELETE FROM telemetry WHERE time < ?", (before,)).rowcount
