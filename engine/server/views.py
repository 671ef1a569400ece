"""A metric series at screen resolution: min/max per bucket, the smoothed curve, the latest points.

The chart asks for as many buckets as it has columns, over the whole series or
a zoomed range of steps (or of times: ``time`` is unix seconds, ``elapsed`` the
seconds since the run's first point, of any metric). A chunk that falls inside one bucket
is folded in from its stored summary without being unpacked, so a series of a
million points costs about as much as its chunk count, not its length.

The smoothed value of each bucket is the debiased EMA at the bucket's last
point, computed over every point of the series from its first, exactly as the
TUI would over raw points. Its state at the end of each sealed chunk never
changes, so ``EmaCache`` keeps it: the first view of a long series walks it
once, later views only what was added since.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.common.smoothing import DebiasedEma
from engine.server.chunks import Point, decode_columns
from engine.server.points import Points

isfinite = math.isfinite

# EMA states kept (one per sealed chunk, smoothing weight and series: 1 GB of points).
EMA_CACHE_ENTRIES = 200_000
# The most points a table's EMA reads (a weight of 0.995 needs all of them).
TAIL_REACH = 8192
AXES = ("step", "elapsed", "time")


@dataclass
class _Bucket:
    vmin: float
    vmax: float
    ema: float | None
    count: int


# (run, key id, smoothing weight, points up to the chunk's end, the chunk's last time)
CacheKey = tuple[int, int, float, int, float]


@dataclass
class EmaCache:
    """The EMA state (accumulator, points counted) after each sealed chunk, per series."""

    states: dict[CacheKey, tuple[float, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: CacheKey) -> tuple[float, int] | None:
        with self.lock:
            return self.states.get(key)

    def put(self, key: CacheKey, state: tuple[float, int]) -> None:
        with self.lock:
            if len(self.states) >= EMA_CACHE_ENTRIES:  # ~20 MB: start over rather than grow
                self.states.clear()
            self.states[key] = state

    def drop_run(self, run: int) -> None:
        """Forget a removed run's states: its integer id may be given to a new run."""
        with self.lock:
            self.states = {k: v for k, v in self.states.items() if k[0] != run}


def series_view(
    points: Points,
    cache: EmaCache,
    run: int,
    key: str,
    buckets: int,
    axis: str = "step",
    lo: float | None = None,
    hi: float | None = None,
    tail: int = 0,
    smoothing: float | None = None,
    interrupted: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """The view of one series; see the module docstring. ``interrupted`` aborts a long walk."""
    kid = points.kid(key)
    size = None if kid is None else points.size(run, kid)
    empty = {"key": key, "n": 0, "extent": None, "range": None, "width": None, "buckets": [],
             "tail": [], "ema": None}
    if kid is None or size is None:
        return empty
    n = size
    origin = (points.first_time(run) or 0.0) if axis == "elapsed" else 0.0

    def x_of(point: Point) -> float:
        return float(point[0]) if axis == "step" else point[2] - origin

    column = "step" if axis == "step" else "time"
    chunks = [
        (i0, count, float(x0) - origin, float(x1) - origin, vmin, vmax, written)
        for i0, count, x0, x1, vmin, vmax, written in points.db.execute(
            f"SELECT i0, n, {column}_lo, {column}_hi, vmin, vmax, time_hi FROM chunks "
            "WHERE run = ? AND kid = ? ORDER BY i0",
            (run, kid),
        )
    ]
    loose = points.loose(run, kid, sum(int(c[1]) for c in chunks))
    extent_lo = min([c[2] for c in chunks] + [x_of(p) for p in loose])
    extent_hi = max([c[3] for c in chunks] + [x_of(p) for p in loose])
    start = extent_lo if lo is None else lo
    end = extent_hi if hi is None else hi
    width = (end - start) / buckets if end > start else 1.0

    def bucket_of(x: float) -> int:
        return min(buckets - 1, max(0, int((x - start) / width)))

    out: dict[int, _Bucket] = {}
    ema = DebiasedEma(smoothing) if smoothing else None

    def fold(b: int, vmin: float, vmax: float, count: int, smoothed: float | None) -> None:
        have = out.get(b)
        if have is None:
            out[b] = _Bucket(vmin, vmax, smoothed, count)
        else:
            have.vmin, have.vmax = min(have.vmin, vmin), max(have.vmax, vmax)
            have.count += count
            have.ema = smoothed if smoothed is not None else have.ema

    def walk(xs: Sequence[float], values: Sequence[float]) -> None:
        """Fold unpacked points in (NaN and ±inf are not drawn), advancing the EMA."""
        if xs != sorted(xs):  # steps went back somewhere: one point at a time
            for x, value in zip(xs, values, strict=True):
                smoothed = _advance(ema, [value]) if ema is not None else None
                if isfinite(value) and start <= x <= end:
                    fold(bucket_of(x), value, value, 1, smoothed)
            return
        lo_i, hi_i = bisect_left(xs, start), bisect_right(xs, end)
        if ema is not None:
            _advance(ema, values[:lo_i])
        first = lo_i
        while first < hi_i:
            b = bucket_of(xs[first])
            # The bucket ends near the first x past its right edge (a plain bisect, in
            # C); the steps after it put a point that rounds the other way where
            # bucket_of does.
            stop = hi_i
            if b < buckets - 1:
                stop = bisect_left(xs, start + (b + 1) * width, first + 1, hi_i)
                while stop > first + 1 and bucket_of(xs[stop - 1]) != b:
                    stop -= 1
                while stop < hi_i and bucket_of(xs[stop]) == b:
                    stop += 1
            segment = [v for v in values[first:stop] if isfinite(v)]
            smoothed = _advance(ema, segment, finite=True) if ema is not None else None
            if segment:
                fold(b, min(segment), max(segment), len(segment), smoothed)
            first = stop
        if ema is not None:
            _advance(ema, values[hi_i:])

    for i0, count, x0, x1, vmin, vmax, written in chunks:
        if interrupted():
            raise InterruptedError("the view was interrupted")
        # The state after this chunk: its last point's time tells it from a chunk at the
        # same place written after a rewind (``Points.rewind``), whoever reads meanwhile.
        cache_key = (run, kid, smoothing or 0.0, int(i0) + int(count), float(written))
        after = cache.get(cache_key) if ema is not None else None
        inside = start <= x0 and x1 <= end
        outside = x1 < start or x0 > end
        # A chunk stored before summaries skipped ±inf may say vmax=inf: unpack that one.
        summed = vmin is None or (isfinite(vmin) and isfinite(vmax))
        if (outside or (inside and summed and bucket_of(x0) == bucket_of(x1))) and (
            ema is None or after is not None
        ):
            if ema is not None and after is not None:
                ema.last, ema.num_accum = after
            if inside and vmin is not None:
                smoothed = _debiased(ema) if ema is not None else None
                fold(bucket_of(x0), float(vmin), float(vmax), int(count), smoothed)
            continue
        blob = points.db.execute(
            "SELECT data FROM chunks WHERE run = ? AND kid = ? AND i0 = ?", (run, kid, i0)
        ).fetchone()[0]
        steps, values, times = decode_columns(blob, int(count))
        walk(list(steps) if axis == "step" else [t / 1e6 - origin for t in times], values)
        if ema is not None:
            cache.put(cache_key, (ema.last, ema.num_accum))
    walk([x_of(p) for p in loose], [p[1] for p in loose])

    last = [p for block in points.iterate(run, kid, n - tail) for p in block] if tail else []
    return {
        "key": key,
        "n": n,
        "extent": [extent_lo, extent_hi],
        "range": [start, end],
        "width": width,  # of a bucket: bucket b covers start + b * width onwards
        "buckets": [[b, v.vmin, v.vmax, v.ema, v.count] for b, v in sorted(out.items())],
        "tail": [list(p) for p in last],
        "ema": None if ema is None else [ema.last, ema.num_accum],
    }


def tail_ema(points: Points, run: int, key: str, weight: float) -> list[float] | None:
    """``[accumulator, count, last step]``: the EMA state after a series' last point.

    For a table column. Only as many points as still weigh more than 1e-16 of
    the result are read (~350 at weight 0.9), so a run of any length costs the
    same; the TUI goes on from this state with the points that stream in after
    the last step.
    """
    reach = 1 if weight <= 0 else min(TAIL_REACH, math.ceil(-37 / math.log(weight)))
    kid = points.kid(key)
    if kid is None:
        return None
    values, last_step = points.tail_values(run, kid, reach)
    if last_step is None:
        return None
    ema = DebiasedEma(weight)
    _advance(ema, values)
    return [ema.last, ema.num_accum, last_step]


def _advance(ema: DebiasedEma, values: Sequence[float], finite: bool = False) -> float | None:
    """Move ``ema`` over ``values`` (non-finite ones skipped); its debiased value after.

    ``finite`` says the caller has already dropped non-finite values.
    """
    if not finite:
        values = [v for v in values if isfinite(v)]
    w, last = ema.weight, ema.last
    for v in values:
        last = last * w + (1.0 - w) * v  # the same arithmetic as DebiasedEma.extend
    ema.last, ema.num_accum = last, ema.num_accum + len(values)
    return _debiased(ema)


def _debiased(ema: DebiasedEma) -> float | None:
    if ema.num_accum == 0:
        return None
    return ema.last / (1.0 - ema.weight**ema.num_accum)
