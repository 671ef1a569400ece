"""Runs that differ only in their seed, drawn as one curve: the mean, with a band.

The many-runs habit repeats each setting over a few seeds; what is compared is
then the setting, not the seed. With grouping on (``G``), the runs on the chart
that share a workload and every config value but their seeds form one group,
drawn as the mean of their curves with a faint band from the lowest to the
highest of them (W&B's grouped runs, min/max range).

Each run's curve is taken as the chart would draw it (its smoothed values, or
with smoothing off the middle of each bucket's range) and read on a grid common
to the group: at each x, the run's last value at or before it, while x lies
within the run. Runs that have ended earlier drop out of the mean there, as in
W&B. Plain functions, tested without a screen.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from engine.client.events import RunInfo
from engine.common.settings import gather
from tui.widgets.chart_layout import Series


@dataclass(frozen=True)
class RunGroup:
    """Runs alike but for their seeds, in the order they were given."""

    runs: tuple[str, ...]
    label: str  # the values that set it apart from the other groups shown


def group_runs(
    run_ids: Iterable[str], runs: Mapping[str, RunInfo], by: Sequence[str] = ()
) -> list[RunGroup]:
    """``run_ids`` gathered by setting (alike but for their seeds, or alike in the
    config keys ``by``), each group where its first run stood.

    A group is named by the config values (seeds aside) that differ between the
    groups, with its count: ``lr=3e-4 (3 runs)``; one alone by its run's name.
    """
    return [RunGroup(tuple(r.id for r in members), group_name(label, members))
            for members, label in gather((runs[r] for r in run_ids if r in runs), by)]


def group_name(label: str, members: Sequence[RunInfo]) -> str:
    """A group named by ``label`` (the values that set it apart) and its count; one run
    alone by its own name."""
    first = members[0]
    if len(members) > 1:
        return f"{label or first.workload} ({len(members)} runs)"
    return label or first.name


Curve = tuple[Sequence[float], Sequence[float | None]]


@dataclass(frozen=True)
class Band:
    """A group's curves read on one grid: the mean, lowest and highest at each x."""

    xs: list[float]
    mean: list[float | None]
    low: list[float | None]
    high: list[float | None]


def band(curves: Sequence[Curve], points: int, reach: float = 0.0) -> Band:
    """The mean and range of ``curves`` at ``points`` x spread over their joint extent.
    A curve counts at x from its first x to its last, ``reach`` either side (half its
    bucket), with its last value at or before x (its first before that)."""
    spans = [(xs[0] - reach, xs[-1] + reach) for xs, _ in curves if xs]
    if not spans or points < 1:
        return Band([], [], [], [])
    lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
    width = (hi - lo) / points if hi > lo else 0.0
    grid = [lo + (g + 0.5) * width for g in range(points)] if width else [lo]
    sums = [0.0] * len(grid)
    counts = [0] * len(grid)
    low: list[float | None] = [None] * len(grid)
    high: list[float | None] = [None] * len(grid)
    isfinite = math.isfinite
    for xs, ys in curves:
        if not xs:
            continue
        # the grid points inside this curve's span
        start, stop = bisect_left(grid, xs[0] - reach), bisect_right(grid, xs[-1] + reach)
        for g in range(start, stop):
            value = ys[max(bisect_right(xs, grid[g]) - 1, 0)]
            if value is None or not isfinite(value):
                continue
            sums[g] += value
            counts[g] += 1
            low_g, high_g = low[g], high[g]
            if low_g is None or value < low_g:
                low[g] = value
            if high_g is None or value > high_g:
                high[g] = value
    mean = [s / c if c else None for s, c in zip(sums, counts, strict=True)]
    return Band(grid, mean, low, high)


def centre_curve(xs: Sequence[float], ys: Sequence[float | None]) -> Curve:
    """A curve of (x, min), (x, max) pairs (a bucketed series) as one value per x: the
    middle of each pair."""
    out_xs: list[float] = []
    out_ys: list[float | None] = []
    for i in range(0, len(ys) - 1, 2):
        a, b = ys[i], ys[i + 1]
        out_xs.append(xs[i])
        out_ys.append(None if a is None or b is None else (a + b) / 2)
    return out_xs, out_ys


def group_series(members: Sequence[Series], label: str, points: int) -> Series:
    """The chart's curve of a group: the mean of ``members`` (curves as the chart draws
    them), with their lowest and highest at each x as the band, on ``points`` xs."""
    curves = [m.curve if m.curve is not None else centre_curve(m.xs, m.ys) for m in members]
    made = band(curves, points, max(m.x_half for m in members))
    xs = [x for x in made.xs for _ in (0, 1)]
    ys = [v for pair in zip(made.low, made.high, strict=True) for v in pair]
    half = (made.xs[1] - made.xs[0]) / 2 if len(made.xs) > 1 else 0.0
    return Series(label, xs, ys, curve=(made.xs, made.mean), x_half=half, band=True)


@dataclass
class BandCache:
    """Each group's curve, made again only when a member's view or the grid changed:
    the same lists at every draw let the chart see that nothing did."""

    made: dict[tuple[str, ...], tuple[list[Sequence[float | None]], int, Series]] = field(
        default_factory=dict)

    def series(self, group: RunGroup, members: Sequence[Series], points: int, emphasis: bool,
               style: str | None) -> Series:
        """``group``'s curve from its members' (those with a view so far)."""
        sources = [m.ys for m in members]
        held = self.made.get(group.runs)
        if held is None or held[1] != points or len(held[0]) != len(sources) or any(
            a is not b for a, b in zip(held[0], sources, strict=True)
        ):
            held = self.made[group.runs] = (sources, points,
                                            group_series(members, group.label, points))
        return replace(held[2], label=group.label, emphasis=emphasis, style=style)

    def forget(self, keep: Iterable[RunGroup]) -> None:
        """Drop the curves of groups no longer shown."""
        kept = {g.runs for g in keep}
        self.made = {k: v for k, v in self.made.items() if k in kept}
