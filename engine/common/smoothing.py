"""TensorBoard's debiased EMA: the smoothed curve drawn over a metric.

The daemon computes it over every stored point of a series for the chart's
downsampled view, and the TUI continues it over points that stream in, so
both must compute exactly the same thing: this one class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def clean(values: Sequence[float | None]) -> list[float | None]:
    """Return `values` with None, NaN and ±inf all turned into None."""
    isfinite = math.isfinite
    return [v if v is not None and isfinite(v) else None for v in values]


class DebiasedEma:
    """TensorBoard's debiased exponential moving average, extendable as points arrive.

    Keeping the accumulator lets a live run append points without smoothing the whole
    history again.
    """

    def __init__(self, weight: float) -> None:
        if not 0.0 <= weight < 1.0:
            raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
        self.weight = weight
        self.last = 0.0
        self.num_accum = 0

    def extend(self, values: Sequence[float | None]) -> list[float | None]:
        """Smooth `values`, continuing from the points seen before; gaps stay None."""
        w = self.weight
        if w == 0.0:
            return clean(values)
        isfinite = math.isfinite
        last, n = self.last, self.num_accum
        out: list[float | None] = []
        append = out.append
        for v in values:
            if v is None or not isfinite(v):
                append(None)
                continue
            last = last * w + (1.0 - w) * v
            n += 1
            append(last / (1.0 - w**n))
        self.last, self.num_accum = last, n
        return out


def ema_debiased(values: Sequence[float | None], weight: float) -> list[float | None]:
    """TensorBoard-style smoothing: EMA from zero, divided by `1 - weight**count`.

    The debiasing makes the first smoothed value equal the first raw value. None, NaN and
    inf pass through as None and do not advance the accumulator; weight 0 is the identity.
    """
    return DebiasedEma(weight).extend(values)
