"""What the sweep view plots: one point per run, a hyper-parameter against the best
or last value of a metric. Plain functions over runs, tested without a screen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.client.events import RunInfo
from engine.common.config import parse_literal
from engine.common.output_lines import training_loss_key
from tui.sweep_groups import differing_keys

# x goes on a log scale when its values span this factor or more: a one-decade grid
# (1e-3, 3e-3, 1e-2) is spaced by ratios, and on a linear axis its small values crowd.
LOG_SPAN = 10.0


@dataclass(frozen=True)
class ScatterPoint:
    """One run on the scatter."""

    run_id: str
    label: str  # how the run is named beside the plot
    x: float
    y: float
    colour: str
    best: bool = False  # the run with the lowest y


@dataclass(frozen=True)
class Scatter:
    """The points to draw, the axes' names, and the runs left out (and why)."""

    points: tuple[ScatterPoint, ...]
    x_name: str
    y_name: str
    log_x: bool
    missing: int  # runs without a numeric value of the parameter or the metric


def number(value: Any) -> float | None:
    """A config or metric value as a finite float, or None (text that reads as a number
    counts: a wrapped command's config is text)."""
    if isinstance(value, str):
        value = parse_literal(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def numeric_params(runs: Sequence[RunInfo]) -> list[str]:
    """The config keys the view can put on x: numeric in at least two runs. Those whose
    values differ between the runs come first (what the sweep varied)."""
    keys = list(dict.fromkeys(k for run in runs for k in run.config))
    numeric = [k for k in keys if sum(number(r.config.get(k)) is not None for r in runs) >= 2]
    varied = set(differing_keys(r.config for r in runs))
    return [k for k in numeric if k in varied] + [k for k in numeric if k not in varied]


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
) -> Scatter:
    """Each run as a point (``param``, best or last ``metric``); the lowest y is the best."""
    found = []
    for run in runs:
        x = number(run.config.get(param))
        y = number((run.best if use_best else run.last).get(metric))
        if x is not None and y is not None:
            found.append((run, x, y))
    best = min(found, key=lambda f: f[2])[0].id if found else None
    xs = [x for _, x, _ in found]
    # The tolerance keeps a decade a decade where floats divide to a hair under 10
    # (3e-4 / 3e-5 = 9.999999999999998).
    log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) >= LOG_SPAN * (1 - 1e-9)
    points = tuple(
        ScatterPoint(run.id, labels.get(run.id, run.name), x, y, colours.get(run.id, ""),
                     run.id == best)
        for run, x, y in found
    )
    y_name = f"{'best' if use_best else 'last'} {metric}"
    return Scatter(points, param, y_name, log_x, len(runs) - len(found))
