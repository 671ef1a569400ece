"""Pure maths for the loss chart: smoothing, min/max downsampling, axis ticks, log scale.

No Textual and no numpy here: the TUI must start fast, and every function below does at
most one pass over the points it is given, with the inner loops in C builtins where it can.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import cast

# Shared with the daemon, which smooths stored series the same way; re-exported here.
from engine.common.smoothing import DebiasedEma as DebiasedEma
from engine.common.smoothing import clean as clean
from engine.common.smoothing import ema_debiased as ema_debiased

MinMax = tuple[float, float]

# The y axis leaves out values far outside the rest (TensorBoard's "ignore outliers in
# chart scaling", on by default there too): beyond OUTLIER_REACH times the span of the
# middle 98% of the values drawn, past either end of it. A diverged run's 1e+28 would
# flatten a hundred curves compared with it; a loss curve's own start is rarely past it.
OUTLIER_SHARE = 0.01
OUTLIER_REACH = 10.0
MIN_VALUES_FOR_OUTLIERS = 50


def bucket_edges(x_lo: float, x_hi: float, columns: int) -> list[float]:
    """The `columns + 1` edges splitting [x_lo, x_hi]; column c holds edge[c] <= x < edge[c+1]."""
    span = x_hi - x_lo
    edges = [x_lo + span * c / columns for c in range(columns + 1)]
    edges[-1] = x_hi
    return edges


def downsample_minmax_gaps(
    xs: Sequence[float],
    ys: Sequence[float | None],
    x_lo: float,
    x_hi: float,
    columns: int,
    positive_only: bool = False,
) -> tuple[list[MinMax | None], list[bool]]:
    """Per-column (min, max) of `ys` over [x_lo, x_hi], plus which columns hold only gaps.

    `xs` must be ascending; `ys` may hold None (not NaN: pass it through `clean` first).
    The last column is closed at x_hi. A column is a gap when it has points but none of
    them has a value, so a line should break there. `positive_only` drops values <= 0,
    for a log scale.
    """
    buckets: list[MinMax | None] = [None] * max(columns, 0)
    gaps = [False] * max(columns, 0)
    if columns <= 0 or x_hi < x_lo:
        return buckets, gaps
    start, stop = bisect_left(xs, x_lo), bisect_right(xs, x_hi)
    if x_hi == x_lo:
        bounds = [start, stop] + [stop] * (columns - 1)
    else:
        edges = bucket_edges(x_lo, x_hi, columns)
        bounds = [start]
        for edge in edges[1:-1]:
            bounds.append(bisect_left(xs, edge, bounds[-1], stop))
        bounds.append(stop)
    for c in range(columns):
        a, b = bounds[c], bounds[c + 1]
        if a == b:
            continue
        chunk = ys[a:b]
        try:  # the fast path: C-level min/max, when the column holds no None
            lo, hi = min(cast(Sequence[float], chunk)), max(cast(Sequence[float], chunk))
            if lo is None or (positive_only and lo <= 0.0):  # [None] compares nothing
                raise TypeError
        except TypeError:
            kept = [v for v in chunk if v is not None and (v > 0.0 or not positive_only)]
            if not kept:
                gaps[c] = True
                continue
            lo, hi = min(kept), max(kept)
        buckets[c] = (lo, hi)
    return buckets, gaps


def downsample_minmax(
    xs: Sequence[float], ys: Sequence[float | None], x_lo: float, x_hi: float, columns: int
) -> list[MinMax | None]:
    """Per-column (min, max) of `ys` for the points with x in [x_lo, x_hi]; None when empty.

    Never more than `columns` entries. The visible range is found by bisection, and each
    point in it is visited once (by C-level `min`/`max` over its column's slice).
    """
    return downsample_minmax_gaps(xs, ys, x_lo, x_hi, columns)[0]


def nice_step(span: float, n: int) -> float:
    """The 1, 2 or 5 times a power of ten step closest to giving `n` intervals over `span`."""
    raw = span / max(n, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for limit, factor in ((1.5, 1.0), (3.0, 2.0), (7.0, 5.0)):
        if raw < limit * power:
            return factor * power
    return 10.0 * power


NICE_MULTIPLES = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten >= `value`.

    A growing axis that ends there rescales only every 20-25 % of growth, so
    between rescales a live curve only adds cells at its right end.
    """
    if not math.isfinite(value) or value <= 0:
        return value
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in NICE_MULTIPLES if m * power >= value * (1 - 1e-12))


def snap_outward(lo: float, hi: float, n: int) -> tuple[float, float]:
    """[lo, hi] widened to the grid of a nice step (about `n` steps over the span).

    A live curve's range then moves only when it crosses a grid line, not with
    every new minimum, so the chart's rows stay put between those moments.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return lo, hi
    step = nice_step(hi - lo, n)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step


def nice_ticks(lo: float, hi: float, n: int) -> list[float]:
    """Round tick values inside [lo, hi], about `n` of them (at least one)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    step = nice_step(hi - lo, n)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + step * 1e-9:
        ticks.append(round(k * step, 12) + 0.0)  # + 0.0 turns -0.0 into 0.0
        k += 1
    return ticks


def format_tick(value: float, step: float) -> str:
    """A short label for a tick, with as many decimals as `step` needs (k/M for big values)."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e12:  # past G a suffix reads worse than an exponent (a diverged loss)
        return _exponent(value)
    if magnitude >= 1e4:
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if magnitude >= scale:
                return f"{value / scale:.4g}{suffix}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if decimals > 4:
        return _exponent(value)
    return f"{value:.{decimals}f}"


def _exponent(value: float) -> str:
    """``value`` in 3 significant digits with a bare exponent: 2e18, 1.2e-07 as 1.2e-7."""
    mantissa, _, exponent = f"{value:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def log_ticks(lo_exp: float, hi_exp: float, n: int) -> list[float]:
    """Tick values (not exponents) for a log axis over [10**lo_exp, 10**hi_exp].

    Whole decades when two or more fit, else 1-2-5 steps, else linear round numbers.
    """
    if not (math.isfinite(lo_exp) and math.isfinite(hi_exp)) or hi_exp <= lo_exp:
        return [10.0**lo_exp] if math.isfinite(lo_exp) else []
    first, last = math.ceil(lo_exp - 1e-9), math.floor(hi_exp + 1e-9)
    if last - first >= 1:
        stride = math.ceil((last - first + 1) / max(n, 1))
        return [10.0**k for k in range(first, last + 1, stride)]
    lo, hi = 10.0**lo_exp, 10.0**hi_exp
    ticks = [
        m * 10.0**k
        for k in range(first - 1, last + 1)
        for m in (1.0, 2.0, 5.0)
        if lo <= m * 10.0**k <= hi
    ]
    return ticks if len(ticks) >= 2 else nice_ticks(lo, hi, n)


def format_log_tick(value: float) -> str:
    """The label for a tick on a log axis: 1e-5, 0.02, 5, 1e4."""
    exponent = math.log10(value) if value > 0 else 0.0
    if abs(exponent) >= 3 and abs(exponent - round(exponent)) < 1e-9:
        return f"1e{round(exponent)}"
    return f"{value:.3g}"


def to_log(value: float) -> float | None:
    """log10 of `value`, or None where a log scale cannot show it (value <= 0)."""
    return math.log10(value) if value > 0 else None


def format_value(value: float | None) -> str:
    """A legend value: 4 significant digits, '-' when missing."""
    return "-" if value is None else f"{value:.4g}"


def inlier_range(values: Sequence[float]) -> MinMax | None:
    """The lowest and highest of ``values`` once those far outside the rest are left out
    (see OUTLIER_REACH); None when none is (or too few values to judge, or no spread)."""
    if len(values) < MIN_VALUES_FOR_OUTLIERS:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1
    low, high = ordered[int(last * OUTLIER_SHARE)], ordered[last - int(last * OUTLIER_SHARE)]
    reach = (high - low) * OUTLIER_REACH
    if reach <= 0 or (low - reach <= ordered[0] and ordered[-1] <= high + reach):
        return None
    start, end = bisect_left(ordered, low - reach), bisect_right(ordered, high + reach)
    return ordered[start], ordered[end - 1]
