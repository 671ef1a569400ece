"""The divergence watch: a run whose loss turns NaN or inf, or leaps far above its
EMA, is paused before it burns hours of compute on garbage.

The daemon judges the points as it reads them from a run's spool, so every kind
of run (train, attached, wrapped) is watched the same way and the training
process pays nothing. Each followed run (its ``LiveRun``) holds one watch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from engine.common.output_lines import training_loss_key
from engine.common.smoothing import DebiasedEma
from engine.rundir.spool_records import Metric

# Points seen before a spike is judged: the first losses fall fast and the EMA of
# a handful says little. NaN and inf need no warm-up.
WARMUP_POINTS = 20
# The EMA's weight: it follows about the last 10 points, so it keeps up with a
# falling loss but a single spike barely moves it.
EMA_WEIGHT = 0.9
# A spike is judged only against an EMA above this: next to zero any noise is a
# huge ratio, and a loss that has been negative (a log-likelihood, an ELBO) has no
# meaningful ratio at all.
MIN_EMA = 1e-6


class DivergenceWatch:
    """Follows one run's training loss and says, once, why it diverged.

    The loss watched is the one the table shows (``training_loss_key`` of the keys
    seen so far): ``loss``, or ``train/loss`` for a wrapped script that prints only
    that. If a better-ranked key turns up later the watch starts again on it.

    ``factor`` None: the run opted out, nothing is judged. After it trips it stays
    quiet until ``reset`` (a resume), so one spike pauses a run once.
    """

    def __init__(self, factor: float | None, tripped: bool = False) -> None:
        self.factor = factor
        self.keys: set[str] = set()  # every metric name seen
        self.key: str | None = None  # the one watched
        self.reset(tripped)

    def reset(self, tripped: bool = False) -> None:
        """Start again from nothing: the EMA is rebuilt from the points that follow."""
        self.tripped = tripped
        self._ema = DebiasedEma(EMA_WEIGHT)
        self._smoothed: float | None = None
        self._seen = 0
        self._signed = False  # a point at or below zero was seen: ratios mean nothing

    def check(self, points: Iterable[Metric]) -> str | None:
        """Take in a batch of points; the reason the run diverged, the first time it does."""
        if self.factor is None or self.tripped:
            return None
        points = list(points)
        if not self.keys.issuperset(p[1] for p in points):
            self.keys.update(p[1] for p in points)
            key = training_loss_key(self.keys)
            if key != self.key:
                self.key = key
                self.reset()
        for step, key, value, _ in points:
            if key != self.key:
                continue
            reason = self._judge(step, key, value, self.factor)
            if reason is not None:
                self.tripped = True
                return reason
        return None

    def _judge(self, step: int, key: str, value: float, factor: float) -> str | None:
        if not math.isfinite(value):
            return f"{key} {value} at step {step}"
        ema = self._smoothed
        if (
            ema is not None
            and self._seen >= WARMUP_POINTS
            and not self._signed
            and ema >= MIN_EMA
            and value > factor * ema
        ):
            return (
                f"{key} {value:.4g} at step {step} is {value / ema:.0f}x "
                f"its EMA {ema:.4g}"
            )
        self._signed = self._signed or value <= 0
        self._smoothed = self._ema.extend([value])[0]
        self._seen += 1
        return None


def watch_for(run: dict[str, Any]) -> DivergenceWatch:
    """The watch of a stored run: its factor, and quiet if it has tripped and not resumed."""
    factor = run.get("divergence_factor")
    return DivergenceWatch(
        None if factor is None else float(factor), tripped=run.get("diverged") is not None
    )


def divergence_condition(run: dict[str, Any]) -> str | None:
    """What a run paused for divergence, or one that finished before its pause could land
    (a NaN in its last steps), shows over its state (the table, ls, show)."""
    diverged = run.get("diverged")
    return str(diverged) if diverged and run.get("state") in ("paused", "finished") else None


def pause_reason(run: dict[str, Any], default: str) -> str:
    """The reason a pause that has taken effect records: the divergence, or ``default``."""
    diverged = run.get("diverged")
    return f"paused: {diverged}" if diverged else default
