"""What the sweep view plots: one point per run, a hyper-parameter against the best
or last value of a metric; or, grouped (``G``), one point per setting: the mean of
its runs (alike but for their seeds, or in the keys named), with the lowest and
highest of them as an error bar. Plain functions over runs, tested without a screen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import fmean
from typing import Any

from engine.client.events import RunInfo
from engine.common.config import parse_literal
from engine.common.metric_goal import higher_is_better
from engine.common.output_lines import training_loss_key
from engine.common.settings import gather, is_seed_key
from engine.common.sweep import spans_decades
from tui.compare import COMPARE_PALETTE
from tui.seed_groups import group_name
from tui.sweep_groups import differing_keys


@dataclass(frozen=True)
class ScatterPoint:
    """One run on the scatter, or the runs of one setting at one x."""

    run_id: str  # the run (of a group: its first)
    label: str  # how the run or group is named beside the plot
    x: float
    y: float  # the run's value, or the mean of the group's
    colour: str
    best: bool = False  # the point with the lowest y
    runs: int = 1  # how many runs the point stands for
    low: float | None = None  # a group's lowest and highest value (None: one run)
    high: float | None = None


@dataclass(frozen=True)
class Scatter:
    """The points to draw, the axes' names, and the runs left out (and why)."""

    points: tuple[ScatterPoint, ...]
    x_name: str
    y_name: str
    log_x: bool
    missing: int  # runs without a numeric value of the parameter or the metric
    grouped: bool = False  # points are settings (``G``)
    # y on a log axis, as x: a sweep whose worst runs' loss is a hundred times its best's
    # shows its best ones apart, not flattened at the bottom
    log_y: bool = False


def number(value: Any) -> float | None:
    """A config or metric value as a finite float, or None (text that reads as a number
    counts: a wrapped command's config is text)."""
    if isinstance(value, str):
        value = parse_literal(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def numeric_params(runs: Sequence[RunInfo], grouped: bool = False) -> list[str]:
    """The config keys the view can put on x: numeric in at least two runs. Those whose
    values differ between the runs come first (what the sweep varied). Grouped, the
    seeds are not among them: their runs are what a point averages."""
    keys = list(dict.fromkeys(k for run in runs for k in run.config
                              if not (grouped and is_seed_key(k))))
    numeric = [k for k in keys if sum(number(r.config.get(k)) is not None for r in runs) >= 2]
    varied = set(differing_keys(r.config for r in runs))
    return [k for k in numeric if k in varied] + [k for k in numeric if k not in varied]


def metric_value(run: RunInfo, metric: str, use_best: bool, higher: bool) -> float | None:
    """The run's value of ``metric`` that the sweep view plots: its last, or its best,
    the highest for a metric where ``higher`` is better, else the lowest."""
    values = run.last if not use_best else (run.highest if higher else run.best)
    return number(values.get(metric))


def metrics_of(runs: Sequence[RunInfo]) -> list[str]:
    """The metrics any of the runs logged, the training loss first."""
    keys = sorted({k for run in runs for k in run.last})
    first = training_loss_key(keys)
    return sorted(keys, key=lambda k: k != first)


def scatter(
    runs: Sequence[RunInfo],
    param: str,
    metric: str,
    use_best: bool,
    colours: Mapping[str, str],
    labels: Mapping[str, str],
    group: bool = False,
    by: Sequence[str] = (),
    higher: bool | None = None,
) -> Scatter:
    """Each run as a point (``param``, best or last ``metric``), or with ``group`` each
    setting (``by`` as for ``gather``) at each of its x; the lowest y is the best (the
    highest, for a metric where higher is better: ``higher``, else as its name says)."""
    if higher is None:
        higher = higher_is_better(metric)
    found: dict[str, tuple[RunInfo, float, float]] = {}
    for run in runs:
        x = number(run.config.get(param))
        y = metric_value(run, metric, use_best, higher)
        if x is not None and y is not None:
            found[run.id] = (run, x, y)
    if group:
        points = _settings(found, colours, labels, by)
    else:
        points = [ScatterPoint(run.id, labels.get(run.id, run.name), x, y,
                               colours.get(run.id, "")) for run, x, y in found.values()]
    if points:
        sign = -1.0 if higher else 1.0
        best = min(range(len(points)), key=lambda i: sign * points[i].y)
        points[best] = replace(points[best], best=True)
    ys = [v for p in points for v in (p.y, p.low, p.high) if v is not None]
    y_name = f"{'best' if use_best else 'last'} {metric}"
    return Scatter(tuple(points), param, y_name, spans_decades([p.x for p in points]),
                   len(runs) - len(found), group, spans_decades(ys))


def _settings(
    found: Mapping[str, tuple[RunInfo, float, float]],
    colours: Mapping[str, str],
    labels: Mapping[str, str],
    by: Sequence[str],
) -> list[ScatterPoint]:
    """A point per setting and x: the mean of its runs' y, their lowest and highest.
    Settings of several runs take the compare palette in order, as the chart's groups
    do; a run alone keeps its own colour and name."""
    points = []
    palette = 0
    for members, label in gather((run for run, _, _ in found.values()), by):
        at: dict[float, list[RunInfo]] = {}  # by x: ``by`` may leave the x key out
        for run in members:
            at.setdefault(found[run.id][1], []).append(run)
        colour = ""
        if len(members) > 1:
            colour = COMPARE_PALETTE[palette % len(COMPARE_PALETTE)]
            palette += 1
        for x, alike in at.items():
            first = alike[0]
            if len(alike) == 1:
                points.append(ScatterPoint(first.id, labels.get(first.id, first.name), x,
                                           found[first.id][2], colour or colours.get(first.id, "")))
                continue
            ys = [found[run.id][2] for run in alike]
            points.append(ScatterPoint(first.id, group_name(label, alike), x, fmean(ys),
                                       colour, runs=len(alike), low=min(ys), high=max(ys)))
    return points
