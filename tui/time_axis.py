"""The chart's x axis in its three kinds: ticks and labels, and the cursor's x as written.

``step`` is the training step. ``elapsed`` is seconds since the run's first point (as
TensorBoard's "relative" axis): runs started hours apart overlay, so the faster one
shows as such; its ticks fall on round durations (30s, 5m, 1h30m). ``time`` is the
wall clock (unix seconds): its ticks fall on round times of the local day (14:05).
"""

from __future__ import annotations

import math
import time

from tui.chart_math import format_tick, nice_ticks

# The kinds, in the order ``x`` steps through them; each name (at most 7 characters) is
# written at the x axis's left end.
X_AXES = ("step", "elapsed", "time")

MINUTE, HOUR, DAY = 60, 3600, 86400
# Tick intervals on the two time axes, in seconds.
TIME_STEPS = (
    1, 2, 5, 10, 15, 30,
    MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
    HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
    DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY,
)


def axis_ticks(axis: str, lo: float, hi: float, n: int) -> list[tuple[float, str]]:
    """About ``n`` ticks in [lo, hi], each with its label, for an x axis of kind ``axis``."""
    if axis == "step" or not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo < 2:
        values = nice_ticks(lo, hi, n)
        step = values[1] - values[0] if len(values) > 1 else hi - lo
        return [(v, format_tick(v, step)) for v in values]
    raw = (hi - lo) / max(n, 1)
    step = next((s for s in TIME_STEPS if s >= raw), TIME_STEPS[-1])
    # On the clock, a tick at each whole interval of the local day (whole days: midnight).
    shift = _utc_offset(lo) if axis == "time" else 0
    k = math.ceil((lo + shift) / step - 1e-9)
    ticks: list[tuple[float, str]] = []
    while k * step - shift <= hi + 1e-9:
        tick = float(k * step - shift)
        ticks.append((tick, format_clock(tick, step) if axis == "time" else format_duration(tick)))
        k += 1
    return ticks


def x_text(axis: str, x: float, resolution: float) -> str:
    """``x`` as the cursor reads it out: a whole step, a duration or a time of day, to
    about ``resolution`` (the x one plot column spans)."""
    if axis == "step":
        return str(math.floor(x))
    if axis == "elapsed":
        return format_duration(x, precise=resolution < MINUTE)
    return format_clock(x, 1.0 if resolution < MINUTE else MINUTE)


def format_duration(seconds: float, precise: bool = False) -> str:
    """A duration in its largest two units (``45s``, ``2m30s``, ``1h30m``, ``2d6h``);
    ``precise``: down to the second (``1h2m5s``)."""
    whole = round(abs(seconds))
    if whole == 0:
        return "0"
    days, rest = divmod(whole, DAY)
    hours, rest = divmod(rest, HOUR)
    minutes, secs = divmod(rest, MINUTE)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    first = next(i for i, (value, _) in enumerate(parts) if value)
    last = len(parts) if precise else first + 2
    text = "".join(f"{value}{unit}" for value, unit in parts[first:last] if value)
    return ("-" if seconds < 0 else "") + text


def _utc_offset(when: float) -> int:
    """The local time zone's offset from UTC at ``when``, in seconds."""
    return time.localtime(when).tm_gmtoff


def format_clock(when: float, step: float) -> str:
    """A unix time as the local clock reads it: ``14:05:30`` for ticks under a minute
    apart, ``14:05`` under a day, ``Nov 27`` for whole days."""
    moment = time.localtime(round(when))
    if step >= DAY:
        return time.strftime("%b %d", moment)
    return time.strftime("%H:%M:%S" if step < MINUTE else "%H:%M", moment)
