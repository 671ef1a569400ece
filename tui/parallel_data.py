"""What the sweep view's parallel coordinates (``p`` there) plot: every setting the runs
differ in as a vertical axis, the best or last value of a metric as the last one, and
each run as a line through its values, shaded by how good that metric is (W&B's
parallel coordinates). Grouped (``G``), a line is a setting: the mean of its runs.

Plain functions over runs, tested without a screen.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from engine.client.events import RunInfo
from engine.common.format import format_number
from engine.common.metric_goal import higher_is_better
from engine.common.settings import gather, is_seed_key
from engine.common.sweep import spans_decades
from tui.scatter_data import metric_value, number
from tui.seed_groups import group_name
from tui.sweep_groups import differing_keys

MAX_AXES = 8  # settings drawn at most (the ones after are named as left out)
# From the best runs' lines to the worst's: the eye finds the good ones first.
SHADES = ("#2ecc71", "#a6d854", "#f1c40f", "#e67e22", "#e74c3c")


@dataclass(frozen=True)
class Axis:
    """One vertical axis: a config key's values (numbers, or words evenly spaced in
    sorted order), or the metric's."""

    name: str
    lo: float  # the lowest value, as placed (log10 of it on a log axis)
    hi: float
    log: bool = False
    words: tuple[str, ...] = ()  # a word axis's values, bottom to top

    def position(self, value: Any) -> float | None:
        """Where ``value`` sits, 0 (bottom) to 1 (top); None: it has no place here."""
        if self.words:
            text = _word(value)
            if text not in self.words:
                return None
            return self.words.index(text) / (len(self.words) - 1) if len(self.words) > 1 else 0.5
        found = number(value)
        if found is None or (self.log and found <= 0):
            return None
        placed = math.log10(found) if self.log else found
        return 0.5 if self.hi == self.lo else (placed - self.lo) / (self.hi - self.lo)

    def text(self, value: Any) -> str:
        """``value`` as this axis writes it."""
        found = None if self.words else number(value)
        return _word(value) if found is None else format_number(found)

    def end_labels(self) -> tuple[str, str]:
        """What is written under and over the axis: its lowest and highest value."""
        if self.words:
            return self.words[0], self.words[-1]
        ends = (10**self.lo, 10**self.hi) if self.log else (self.lo, self.hi)
        return format_number(ends[0]), format_number(ends[1])


@dataclass(frozen=True)
class Line:
    """A run (or a setting's runs) across the axes."""

    run_id: str  # the run (of a group: its first)
    label: str
    positions: tuple[float | None, ...]  # one per axis, the metric's last; None: no value
    value: float  # the metric (a group's mean)
    shade: int  # index into SHADES: 0 for the best fifth of the lines
    best: bool = False
    runs: int = 1
    texts: tuple[str, ...] = ()  # its value on each setting's axis, as written ("": none)


@dataclass(frozen=True)
class Parallel:
    """The axes, the lines (worst first, so that the best are drawn over them), and the
    runs left out for want of a value of the metric."""

    axes: tuple[Axis, ...]
    lines: tuple[Line, ...]
    y_name: str
    missing: int
    left_out: tuple[str, ...] = ()  # settings past MAX_AXES


def _word(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _axis(name: str, values: Sequence[Any]) -> Axis | None:
    """The axis ``values`` (of one key, None where a run has none) call for."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    numbers = [number(v) for v in present]
    if all(n is not None for n in numbers):
        found = [n for n in numbers if n is not None]
        log = spans_decades(found)
        placed = [math.log10(n) for n in found] if log else found
        return Axis(name, min(placed), max(placed), log)
    return Axis(name, 0.0, 1.0, words=tuple(sorted({_word(v) for v in present})))


def parallel(
    runs: Sequence[RunInfo],
    metric: str,
    use_best: bool,
    labels: Mapping[str, str],
    group: bool = False,
    by: Sequence[str] = (),
    weight: Mapping[str, float | None] | None = None,
    higher: bool | None = None,
) -> Parallel:
    """The runs with a value of ``metric`` (best or last) as lines across the settings
    they differ in (grouped: seeds are what a line averages, not an axis), ranked from
    the lowest value (the highest, for a metric where higher is better: ``higher``, else
    as its name says). Past MAX_AXES settings, those of the highest ``weight``
    (importance) are drawn, in their order."""
    if higher is None:
        higher = higher_is_better(metric)
    valued = [(r, y) for r in runs
              if (y := metric_value(r, metric, use_best, higher)) is not None]
    members: list[tuple[list[RunInfo], str, float]]
    if group:
        value_of = {r.id: y for r, y in valued}
        members = [(alike, group_name(label, alike), fmean(value_of[r.id] for r in alike))
                   for alike, label in gather((r for r, _ in valued), by)]
    else:
        members = [([r], labels.get(r.id, r.name), y) for r, y in valued]
    keys = [k for k in differing_keys(r.config for r, _ in valued)
            if not (group and is_seed_key(k))]
    axes: list[Axis] = []
    configs = [_shared(alike) for alike, _, _ in members]
    for key in keys:
        axis = _axis(key, [config.get(key) for config in configs])
        if axis is not None:
            axes.append(axis)
    if len(axes) > MAX_AXES and weight:  # the settings that matter most are drawn
        kept = set(sorted((a.name for a in axes),
                          key=lambda k: -(weight.get(k) or 0.0))[:MAX_AXES])
        axes = [a for a in axes if a.name in kept] + [a for a in axes if a.name not in kept]
    left_out = tuple(a.name for a in axes[MAX_AXES:])
    axes = axes[:MAX_AXES]
    y_name = f"{'best' if use_best else 'last'} {metric}"
    values = [y for _, _, y in members]
    metric_axis = _axis(y_name, values)
    if metric_axis is not None:
        axes.append(metric_axis)
    sign = -1.0 if higher else 1.0
    ranked = sorted(range(len(members)), key=lambda i: sign * values[i])
    lines = []
    for rank, i in enumerate(ranked):
        alike, label, y = members[i]
        settings = [configs[i].get(a.name) for a in axes[:-1]]
        positions = tuple(a.position(v) for a, v in zip(axes, settings, strict=False))
        texts = tuple("" if p is None else a.text(v)
                      for a, v, p in zip(axes, settings, positions, strict=False))
        lines.append(Line(alike[0].id, label, (*positions, metric_axis.position(y)
                                                if metric_axis else None),
                          y, rank * len(SHADES) // len(members), rank == 0, len(alike),
                          texts))
    return Parallel(tuple(axes), tuple(reversed(lines)), y_name, len(runs) - len(valued),
                    left_out)


def _shared(runs: Sequence[RunInfo]) -> dict[str, Any]:
    """The config values all of ``runs`` agree on (a group's line has no place on an
    axis its runs differ in)."""
    first = runs[0].config
    return {k: v for k, v in first.items() if all(r.config.get(k) == v for r in runs[1:])}
