"""Metric points in SQLite: chunked series, the latest value of each, screen-sized views.

Three tables hold them (created by the store's migration to version 3):

- ``series(run, kid, n, sealed, last_step, last_value, last_time)``: one row per
  metric of a run, updated in the same transaction as its points. ``n`` counts
  the points; the first ``sealed`` of them are packed in ``chunks``, the rest
  wait in ``recent``. Reading a run's latest values or point count never
  touches its points.
- ``recent(run, kid, i, step, value, time)``: a point per row, ``i`` its index
  in the series (the order it was logged in). Clustered by (run, key, index).
- ``chunks(run, kid, i0, n, step_lo, step_hi, time_lo, time_hi, vmin, vmax, data)``:
  points ``i0 .. i0+n-1`` packed by ``engine.server.chunks``, with a summary that lets a
  downsampled view skip unpacking.

Points of a series are kept in the order they were logged, which is step order
for every well-behaved loop; nothing here assumes it, except that readers
which want step order sort (the chart) and the rest return logging order.
"""

from __future__ import annotations

import math
import sqlite3
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from engine.server.chunks import CHUNK_POINTS, Point, decode, decode_columns, encode, to_micros

SCHEMA = """
CREATE TABLE keys (
    kid   INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE
);
CREATE TABLE series (
    run         INTEGER NOT NULL,
    kid         INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    sealed      INTEGER NOT NULL,
    last_step   INTEGER,
    last_value  REAL,
    last_time   REAL,
    PRIMARY KEY (run, kid)
) WITHOUT ROWID;
CREATE TABLE recent (
    run    INTEGER NOT NULL,
    kid    INTEGER NOT NULL,
    i      INTEGER NOT NULL,
    step   INTEGER NOT NULL,
    value  REAL,
    time   REAL NOT NULL,
    PRIMARY KEY (run, kid, i)
) WITHOUT ROWID;
CREATE TABLE chunks (
    run      INTEGER NOT NULL,
    kid      INTEGER NOT NULL,
    i0       INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    step_lo  INTEGER NOT NULL,
    step_hi  INTEGER NOT NULL,
    time_lo  REAL NOT NULL,
    time_hi  REAL NOT NULL,
    vmin     REAL,
    vmax     REAL,
    data     BLOB NOT NULL
);
CREATE UNIQUE INDEX chunks_series ON chunks(run, kid, i0)
"""

# A bound on what one page of points may cost as JSON (a point ~40 bytes plus its key).
PAGE_BYTES = 1024 * 1024
_FINITE_MAX = 1.7976931348623157e308  # the largest finite double


@dataclass(frozen=True)
class Columns:
    """Consecutive points of one key of a run, as columns, from its ``start``-th point."""

    key: str
    start: int
    steps: array[int]
    values: array[float]
    times_us: array[int]


def as_value(value: Any) -> float:
    """A point's value as stored: a float; a point without one (null) is NaN.

    SQLite keeps NaN as NULL (in ``recent`` and ``series.last_value``), so
    readers turn NULL back into NaN with this too.
    """
    return math.nan if value is None else float(value)


class Points:
    """Reads and writes of metric points over one connection.

    The writer keeps each touched series' ``(n, sealed)`` in memory; callers
    run writes inside a transaction and call ``forget`` if it rolls back.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._kids: dict[str, int] = {}
        self._counts: dict[tuple[int, int], tuple[int, int]] = {}

    def forget(self) -> None:
        """Drop cached ids and counts (after a rolled-back write, which may have made them)."""
        self._kids.clear()
        self._counts.clear()

    # -- keys -----------------------------------------------------------------

    def kid(self, name: str, create: bool = False) -> int | None:
        """The integer id of a metric name; with ``create``, made if it is new."""
        kid = self._kids.get(name)
        if kid is None:
            row = self.db.execute("SELECT kid FROM keys WHERE name = ?", (name,)).fetchone()
            if row is not None:
                kid = int(row[0])
            elif create:
                cursor = self.db.execute("INSERT INTO keys (name) VALUES (?)", (name,))
                kid = int(cursor.lastrowid or 0)
            else:
                return None
            self._kids[name] = kid
        return kid

    def _keys_from(
        self, run: int, key: str | None, start: tuple[str, int] | None
    ) -> Iterator[tuple[str, int, int]]:
        """``(name, kid, first index)`` of a run's metrics by name, from a page cursor on."""
        rows = self.db.execute(
            "SELECT k.name, k.kid FROM series s JOIN keys k ON k.kid = s.kid WHERE s.run = ? "
            "ORDER BY k.name",
            (run,),
        ).fetchall()
        for name, kid in rows:
            if key not in (None, name) or (start is not None and name < start[0]):
                continue
            yield str(name), int(kid), start[1] if start is not None and name == start[0] else 0

    def size(self, run: int, kid: int) -> int | None:
        """How many points a series holds (None: the run never logged it)."""
        row = self.db.execute(
            "SELECT n FROM series WHERE run = ? AND kid = ?", (run, kid)
        ).fetchone()
        return None if row is None else int(row[0])

    # -- writing --------------------------------------------------------------

    def add(self, run: int, points: Iterable[Sequence[Any]]) -> None:
        """Append ``(step, key, value, time)`` points; raises ValueError on a malformed one.

        Must run inside a transaction: the caller commits these points together
        with whatever else marks them as stored (the spool offset).
        """
        by_key: dict[int, list[Point]] = {}
        for step, key, value, when in points:
            kid = self.kid(str(key), create=True)
            assert kid is not None
            by_key.setdefault(kid, []).append((int(step), as_value(value), float(when)))
        for kid, new in by_key.items():
            self._append(run, kid, new)

    def _append(self, run: int, kid: int, new: list[Point]) -> None:
        counts = self._counts.get((run, kid))
        if counts is None:
            row = self.db.execute(
                "SELECT n, sealed FROM series WHERE run = ? AND kid = ?", (run, kid)
            ).fetchone()
            counts = (int(row[0]), int(row[1])) if row else (0, 0)
        n, sealed = counts
        waiting = n - sealed
        if waiting + len(new) >= CHUNK_POINTS:
            # Enough for whole chunks: pack what waited and the new points together.
            pending = self.loose(run, kid, sealed) + new
            full = len(pending) - len(pending) % CHUNK_POINTS
            self._pack(run, kid, sealed, pending[:full])
            rest, first = pending[full:], sealed + full
            sealed += full
        else:
            rest, first = new, n
        self.db.executemany(
            "INSERT INTO recent (run, kid, i, step, value, time) VALUES (?, ?, ?, ?, ?, ?)",
            [(run, kid, first + j, s, v, t) for j, (s, v, t) in enumerate(rest)],
        )
        n += len(new)
        last_step, last_value, last_time = new[-1]
        self.db.execute(
            "INSERT INTO series (run, kid, n, sealed, last_step, last_value, last_time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run, kid) DO UPDATE SET "
            "n = excluded.n, sealed = excluded.sealed, last_step = excluded.last_step, "
            "last_value = excluded.last_value, last_time = excluded.last_time",
            (run, kid, n, sealed, last_step, last_value, last_time),
        )
        self._counts[(run, kid)] = (n, sealed)

    def removed_runs(self) -> list[int]:
        """The integer ids of removed runs whose points are still being deleted."""
        rows = self.db.execute(
            "SELECT DISTINCT run FROM series WHERE run NOT IN (SELECT rid FROM runs)"
        ).fetchall()
        return [int(row[0]) for row in rows]

    def purge(self, run: int, chunks: int) -> tuple[int, bool]:
        """Delete up to ``chunks`` chunks of a removed run; once it has none left, its
        loose points and its series rows (the last, as they mark the run as still to
        purge). Returns the chunks deleted, and whether nothing of the run is left."""
        deleted = self.db.execute(
            "DELETE FROM chunks WHERE rowid IN (SELECT rowid FROM chunks WHERE run = ? LIMIT ?)",
            (run, chunks),
        ).rowcount
        if deleted == chunks:
            return deleted, False
        self.db.execute("DELETE FROM recent WHERE run = ?", (run,))
        self.db.execute("DELETE FROM series WHERE run = ?", (run,))
        self._counts = {key: counts for key, counts in self._counts.items() if key[0] != run}
        return deleted, True

    def rewind(self, run: int, step: int) -> int:
        """Drop each series' points from the first one at ``step`` or later to its end
        (a run taken up again from a checkpoint at ``step`` logs them again); returns how
        many went. The chunks before stay as they are; the one it cuts is packed again."""
        dropped = 0
        rows = self.db.execute(
            "SELECT kid, n, sealed FROM series WHERE run = ? AND last_step IS NOT NULL",
            (run,),
        ).fetchall()
        for kid, n, sealed in rows:
            cut = self._first_at(run, int(kid), step)
            if cut is not None:
                dropped += int(n) - cut
                self._cut(run, int(kid), cut, int(sealed))
        return dropped

    def _first_at(self, run: int, kid: int, step: int) -> int | None:
        """The index of the first point of a series at ``step`` or later (None: none is);
        chunks wholly before ``step`` are passed over by their summaries, unread."""
        rows = self.db.execute(
            "SELECT i0, n, data FROM chunks WHERE run = ? AND kid = ? AND step_hi >= ? "
            "ORDER BY i0 LIMIT 1",
            (run, kid, step),
        ).fetchall()
        for i0, n, data in rows:
            steps = decode_columns(data, int(n))[0]
            return int(i0) + next(j for j, s in enumerate(steps) if s >= step)
        row = self.db.execute(
            "SELECT min(i) FROM recent WHERE run = ? AND kid = ? AND step >= ?",
            (run, kid, step),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def _cut(self, run: int, kid: int, keep: int, sealed: int) -> None:
        """Keep the first ``keep`` points of a series, none after."""
        self.db.execute("DELETE FROM recent WHERE run = ? AND kid = ? AND i >= ?",
                        (run, kid, keep))
        if keep < sealed:
            row = self.db.execute(
                "SELECT i0, n, data FROM chunks WHERE run = ? AND kid = ? AND i0 <= ? "
                "AND i0 + n > ?", (run, kid, keep, keep),
            ).fetchone()
            self.db.execute("DELETE FROM chunks WHERE run = ? AND kid = ? AND i0 >= ?",
                            (run, kid, keep))
            if row is not None and int(row[0]) < keep:  # the chunk the cut falls in
                i0 = int(row[0])
                self.db.execute("DELETE FROM chunks WHERE run = ? AND kid = ? AND i0 = ?",
                                (run, kid, i0))
                self._write_chunk(run, kid, i0, decode(row[2], int(row[1]))[: keep - i0])
            sealed = keep
        if keep == 0:
            self.db.execute("DELETE FROM series WHERE run = ? AND kid = ?", (run, kid))
            self._counts.pop((run, kid), None)
            return
        last = self._point_at(run, kid, keep - 1, sealed)
        self.db.execute(
            "UPDATE series SET n = ?, sealed = ?, last_step = ?, last_value = ?, "
            "last_time = ? WHERE run = ? AND kid = ?",
            (keep, sealed, last[0], last[1], last[2], run, kid),
        )
        self._counts[(run, kid)] = (keep, sealed)

    def _point_at(self, run: int, kid: int, i: int, sealed: int) -> Point:
        """The ``i``-th point of a series that holds at least ``i + 1``."""
        if i >= sealed:
            return self.loose(run, kid, i)[0]
        skip, n, data = self._chunks_from(run, kid, i)[0]
        return decode(data, n)[skip]

    def seal(self, run: int) -> None:
        """Pack every waiting point of a run into chunks (when it will log no more)."""
        rows = self.db.execute(
            "SELECT kid, n, sealed FROM series WHERE run = ? AND n > sealed", (run,)
        ).fetchall()
        for kid, n, sealed in rows:
            self._pack(run, kid, sealed, self.loose(run, kid, sealed))
            self.db.execute(
                "UPDATE series SET sealed = n WHERE run = ? AND kid = ?", (run, kid)
            )
            self._counts[(run, kid)] = (int(n), int(n))

    def _pack(self, run: int, kid: int, i0: int, points: Sequence[Point]) -> None:
        """Write ``points`` (from index ``i0`` on) as chunks; no loose row stays behind."""
        for start in range(0, len(points), CHUNK_POINTS):
            self._write_chunk(run, kid, i0 + start, points[start : start + CHUNK_POINTS])
        self.db.execute("DELETE FROM recent WHERE run = ? AND kid = ?", (run, kid))

    def _write_chunk(self, run: int, kid: int, i0: int, points: Sequence[Point]) -> None:
        blob, s = encode(points)
        self.db.execute(
            "INSERT INTO chunks (run, kid, i0, n, step_lo, step_hi, time_lo, time_hi, "
            "vmin, vmax, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run, kid, i0, s.n, s.step_lo, s.step_hi, s.time_lo, s.time_hi, s.vmin, s.vmax,
             blob),
        )

    # -- reading --------------------------------------------------------------

    def loose(self, run: int, kid: int, start: int = 0) -> list[Point]:
        """The points of a series not yet packed into a chunk, from index ``start``."""
        rows = self.db.execute(
            "SELECT step, value, time FROM recent WHERE run = ? AND kid = ? AND i >= ? "
            "ORDER BY i",
            (run, kid, start),
        )
        return [(int(s), as_value(v), float(t)) for s, v, t in rows]

    def _chunks_from(self, run: int, kid: int, start: int) -> list[tuple[int, int, bytes]]:
        """``(points to skip, n, data)`` of the chunks holding index ``start`` and after."""
        rows = self.db.execute(
            "SELECT i0, n, data FROM chunks WHERE run = ? AND kid = ? AND i0 + n > ? "
            "ORDER BY i0",
            (run, kid, start),
        ).fetchall()
        return [(max(0, start - int(i0)), int(n), data) for i0, n, data in rows]

    def iterate(self, run: int, kid: int, start: int = 0) -> Iterator[list[Point]]:
        """The points of a series from index ``start``, a chunk's worth at a time."""
        for skip, n, data in self._chunks_from(run, kid, start):
            yield decode(data, n)[skip:]
        yield self.loose(run, kid, start)

    def iterate_columns(
        self, run: int, kid: int, start: int = 0
    ) -> Iterator[tuple[array[int], array[float], array[int]]]:
        """Like ``iterate``, as (steps, values, times in microseconds) arrays: no object
        per point, and integer times."""
        for skip, n, data in self._chunks_from(run, kid, start):
            steps, values, times = decode_columns(data, n)
            yield steps[skip:], values[skip:], times[skip:]
        loose = self.loose(run, kid, start)
        yield (array("q", [p[0] for p in loose]), array("d", [p[1] for p in loose]),
               array("q", [to_micros(p[2]) for p in loose]))

    def column_page(
        self, run: int, key: str | None, start: tuple[str, int] | None, max_points: int
    ) -> tuple[list[Columns], tuple[str, int] | None]:
        """A page of points as one ``Columns`` per key: the form for loading whole series
        (far fewer objects than a tuple a point, and packed whole for the wire)."""
        out: list[Columns] = []
        left = max_points
        for name, kid, first in self._keys_from(run, key, start):
            steps, values, times = array("q"), array("d"), array("q")
            for block in self.iterate_columns(run, kid, first):
                take = min(left, len(block[0]))
                steps += block[0][:take]
                values += block[1][:take]
                times += block[2][:take]
                left -= take
                if left == 0:
                    break
            out.append(Columns(name, first, steps, values, times))
            if left == 0:  # the next page may find nothing more: it then says so
                return out, (name, first + len(steps))
        return out, None

    def tail_values(self, run: int, kid: int, count: int) -> tuple[list[float], int | None]:
        """The values of a series' last ``count`` points, oldest first, and
        the step of its last point; unpacks only the chunks those points are in."""
        rows = self.db.execute(
            "SELECT step, value FROM recent WHERE run = ? AND kid = ? ORDER BY i DESC LIMIT ?",
            (run, kid, count),
        ).fetchall()
        values = [as_value(v) for _, v in reversed(rows)]
        last_step = int(rows[0][0]) if rows else None
        if len(values) < count:
            chunks = self.db.execute(
                "SELECT n, data FROM chunks WHERE run = ? AND kid = ? ORDER BY i0 DESC",
                (run, kid),
            )
            for n, data in chunks:
                steps, chunk_values, _ = decode_columns(data, int(n))
                if last_step is None:
                    last_step = int(steps[-1])
                values[:0] = chunk_values[-(count - len(values)) :].tolist()
                if len(values) >= count:
                    break
        return values, last_step

    def lowest_values(self, runs: Sequence[int]) -> dict[int, dict[str, float]]:
        """The lowest finite value of every key of each of ``runs``, in one query.

        Sealed points are read from their chunk's summary (``vmin``), never unpacked;
        only the loose points are read one by one. A run with no finite value of a
        key has no entry for it.
        """
        return self._extreme_values(runs, "min", "vmin")

    def highest_values(self, runs: Sequence[int]) -> dict[int, dict[str, float]]:
        """The highest finite value of every key of each of ``runs`` (``lowest_values``
        the other way: from the chunks' ``vmax``)."""
        return self._extreme_values(runs, "max", "vmax")

    def _extreme_values(
        self, runs: Sequence[int], pick: str, summary: str
    ) -> dict[int, dict[str, float]]:
        if not runs:
            return {}
        marks = ", ".join("?" * len(runs))
        finite = (-_FINITE_MAX, _FINITE_MAX)
        # Each side grouped on its own, along its index (chunks_best covers the chunks'
        # side): a union grouped as a whole is sorted in a temporary b-tree, ~10x slower.
        # NaN is stored as NULL and fails BETWEEN; so do ±inf (an old summary may hold one).
        rows = self.db.execute(
            f"SELECT ex.run, k.name, {pick}(ex.v) FROM ("
            f"  SELECT run, kid, {pick}({summary}) AS v FROM chunks WHERE run IN ({marks})"
            f"   AND {summary} BETWEEN ? AND ? GROUP BY run, kid"
            "   UNION ALL"
            f"  SELECT run, kid, {pick}(value) AS v FROM recent WHERE run IN ({marks})"
            "   AND value BETWEEN ? AND ? GROUP BY run, kid"
            ") AS ex JOIN keys k ON k.kid = ex.kid GROUP BY ex.run, ex.kid",
            (*runs, *finite, *runs, *finite),
        )
        extremes: dict[int, dict[str, float]] = {}
        for run, name, value in rows:
            extremes.setdefault(int(run), {})[str(name)] = float(value)
        return extremes

    def count(self, run: int) -> int:
        row = self.db.execute("SELECT sum(n) FROM series WHERE run = ?", (run,)).fetchone()
        return int(row[0] or 0)

    def first_time(self, run: int) -> float | None:
        """When the run logged its first point, of any key (None: it logged none). A
        series' first point is its earliest: points are stored as they are logged."""
        row = self.db.execute(
            "SELECT min(t) FROM (SELECT min(time_lo) AS t FROM chunks WHERE run = ? AND i0 = 0 "
            "UNION ALL SELECT min(time) FROM recent WHERE run = ? AND i = 0)",
            (run, run),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def last_step(self, run: int) -> int | None:
        """The highest step the run logged a point at, of any key (None: it logged none);
        a series' last point is at its highest step (points come in step order)."""
        row = self.db.execute("SELECT max(last_step) FROM series WHERE run = ?", (run,)).fetchone()
        return None if row[0] is None else int(row[0])

    def last_values(self, run: int) -> dict[str, float]:
        """The latest value of every key of a run, from its series rows alone."""
        rows = self.db.execute(
            "SELECT k.name, s.last_value FROM series s JOIN keys k ON k.kid = s.kid "
            "WHERE s.run = ?",
            (run,),
        )
        return {str(name): as_value(value) for name, value in rows}

    def page(
        self,
        run: int,
        key: str | None,
        start: tuple[str, int] | None,
        after_step: int | None,
        max_points: int,
    ) -> tuple[list[tuple[int, str, float, float]], tuple[str, int] | None]:
        """Points ``(step, key, value, time)`` by key name, then logging order.

        Returns at most ``max_points`` points and about ``PAGE_BYTES`` of JSON,
        and the cursor ``(key, index)`` where the next page starts (None: done).
        """
        out: list[tuple[int, str, float, float]] = []
        budget = PAGE_BYTES
        for name, kid, index in self._keys_from(run, key, start):
            cost = len(name.encode()) + 40
            for block in self.iterate(run, kid, index):
                for step, value, when in block:
                    if len(out) >= max_points or (out and budget < cost):
                        return out, (name, index)
                    index += 1
                    if after_step is not None and step <= after_step:
                        continue
                    out.append((step, name, value, when))
                    budget -= cost
        return out, None

    def tail(self, run: int, key: str, count: int) -> list[tuple[int, str, float, float]]:
        """The latest ``count`` points of one key, oldest first."""
        kid = self.kid(key)
        size = None if kid is None else self.size(run, kid)
        if kid is None or size is None:
            return []
        points = [p for block in self.iterate(run, kid, max(0, size - count)) for p in block]
        return [(s, key, v, t) for s, v, t in points]
