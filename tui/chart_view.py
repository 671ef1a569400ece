"""How the chart shows its runs: the one place the chart's view settings live.

The app keeps one ``ChartView`` (in ``TuiState.view``) and replaces it when a
key changes a setting; the chart draws by it and the chart feed asks the
daemon for views by it. Nothing else holds a copy of these settings.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from engine.common.output_lines import training_loss_key
from tui.time_axis import X_AXES

# The weights ``s`` steps through (a debiased EMA, as TensorBoard smooths).
SMOOTHING_STEPS = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)
MAX_SMOOTHING = 0.999


@dataclass(frozen=True)
class ChartView:
    """The metric shown, its smoothing, and the axes' kinds."""

    metric: str = "loss"  # "loss" also stands for runs' training loss under another name
    smoothing: float = SMOOTHING_STEPS[3]
    axis: str = "step"  # what x is: one of X_AXES, named as the daemon names it
    log_y: bool = False
    # y fits every value drawn (False: values far outside the rest are left off the
    # chart, ``chart_math.inlier_range``, and the chart says so)
    all_y: bool = False
    # Runs alike but for their seeds drawn as one mean curve with a band (tui.seed_groups);
    # with ``group_by``, runs alike in those config keys.
    group: bool = False
    group_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Keep the weight in [0, MAX_SMOOTHING]: a weight of 1 would never move.
        object.__setattr__(self, "smoothing", min(max(float(self.smoothing), 0.0), MAX_SMOOTHING))
        if self.axis not in X_AXES:
            object.__setattr__(self, "axis", X_AXES[0])

    def next_axis(self) -> ChartView:
        """The next kind of x axis: step, time since the run's first point, time of day."""
        return replace(self, axis=X_AXES[(X_AXES.index(self.axis) + 1) % len(X_AXES)])

    def next_smoothing(self) -> ChartView:
        """The next weight of SMOOTHING_STEPS (from the first if this one is not among them)."""
        steps = SMOOTHING_STEPS
        index = steps.index(self.smoothing) if self.smoothing in steps else 0
        return replace(self, smoothing=steps[(index + 1) % len(steps)])

    def metric_for(self, keys: Collection[str]) -> str:
        """The metric drawn for runs that logged ``keys``: the one chosen, except that the
        default ``loss``, where they logged none, is their training loss (``train/loss``)."""
        if self.metric != "loss" or self.metric in keys:
            return self.metric
        return training_loss_key(keys) or self.metric

    def next_metric(self, keys: Collection[str]) -> ChartView:
        """The next of ``keys`` in name order after the one drawn (``loss`` when none)."""
        ordered = sorted(set(keys)) or ["loss"]
        shown = self.metric_for(keys)
        index = ordered.index(shown) if shown in ordered else -1
        return replace(self, metric=ordered[(index + 1) % len(ordered)])
