"""Which settings go with a lower loss, over a set of runs (``traintop ls --corr``, and
the importance the sweep view's parallel coordinates give each axis).

For each numeric config key whose value differs between the runs, against each run's
best training loss:

- importance: how much of the spread in the runs' loss ranks the setting's value
  explains, whatever the shape (an ``lr`` best in the middle of its range too): the
  runs in up to five bins of the setting (by value, or of about equal counts in its
  order), omega squared of their loss ranks between the bins (0: no more than chance;
  1: all of it), with the bin whose runs did best;
- Spearman's rank correlation (W&B's parameter correlation, on ranks, so a log-scaled
  ``lr`` counts as much as a linear ``batch``): -1, the loss falls as the setting
  grows; +1, it rises; near 0, no order between them (or a U).

Seeds are left out (config keys ending in ``seed``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.client.events import RunInfo
from engine.client.run_select import finite
from engine.client.sweep_summary import best_loss, lowest
from engine.common.config_diff import config_diff
from engine.common.format import format_number
from engine.common.settings import is_seed_key
from engine.common.sweep import spans_decades

MIN_RUNS = 3  # fewer pairs say nothing about an order
MATTERS = 0.05  # the least importance a closer look narrows a setting for
CLOSER_TRIALS = 20  # the runs a closer look draws
BINS = 5  # a setting's values in at most this many bins for its importance


def ranks(values: Sequence[float]) -> list[float]:
    """Each value's rank, 1 for the lowest; tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranked = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranked[i] = (start + end) / 2 + 1
        start = end + 1
    return ranked


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation of two equally long sequences (Pearson's on their
    ranks, so ties are fair); None when either holds a single value throughout."""
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def bins_of(xs: Sequence[float]) -> list[list[int]]:
    """The indices of ``xs`` in bins, in the order of their values: a bin a value when
    there are BINS values or fewer, else BINS bins of about equal counts, each value
    whole in one bin."""
    distinct = sorted(set(xs))
    if len(distinct) <= BINS:
        return [[i for i, x in enumerate(xs) if x == value] for value in distinct]
    order = sorted(range(len(xs)), key=xs.__getitem__)
    bins: dict[int, list[int]] = {}
    start = 0  # where the run of equal values the current one belongs to starts
    for position, i in enumerate(order):
        if position and xs[i] != xs[order[position - 1]]:
            start = position
        bins.setdefault(start * BINS // len(xs), []).append(i)
    return list(bins.values())


def omega_squared(bins: Sequence[Sequence[int]], ys: Sequence[float]) -> float | None:
    """How much of the spread of ``ys`` the bins explain, corrected for what bins of
    that many runs would explain by chance (0 at least); None for one bin, or as many
    bins as values, or no spread."""
    n, k = len(ys), len(bins)
    mean = sum(ys) / n
    total = sum((y - mean) ** 2 for y in ys)
    if k < 2 or n <= k or total == 0:
        return None
    between = sum(len(b) * (sum(ys[i] for i in b) / len(b) - mean) ** 2 for b in bins)
    within = (total - between) / (n - k)
    return max(0.0, (between - (k - 1) * within) / (total + within))


@dataclass(frozen=True)
class Correlation:
    key: str
    runs: int  # runs with a number for the key and a best loss
    rho: float
    lowest: float
    highest: float
    at_best: Any  # the key's value in the run of the lowest best loss
    importance: float | None = None  # omega squared of the loss ranks between bins
    best_bin: tuple[float, float] | None = None  # the values of the bin that did best

    @property
    def bin_text(self) -> str:
        if self.best_bin is None:
            return "-"
        low, high = self.best_bin
        return format_number(low) if low == high else \
            f"{format_number(low)}..{format_number(high)}"


Scored = tuple[RunInfo, float]


def _scored(runs: Sequence[RunInfo], score: Callable[[RunInfo], float | None],
            ) -> tuple[list[Scored], Scored | None]:
    """The runs that have a score, with it, and the best of them (the lowest score;
    ties to the lower id)."""
    scored = [(r, value) for r in runs if (value := score(r)) is not None]
    return scored, lowest(scored)


def correlations(
    runs: Sequence[RunInfo], score: Callable[[RunInfo], float | None] = best_loss
) -> list[Correlation]:
    """Each numeric setting that differs between ``runs`` against their ``score`` (lower
    is better; by default the best training loss), the most important first."""
    scored, best = _scored(runs, score)
    found = []
    for key in config_diff([r.config for r, _ in scored]):
        if is_seed_key(key):
            continue
        pairs = [(x, loss) for r, loss in scored if (x := finite(r.config.get(key))) is not None]
        if len(pairs) < MIN_RUNS:
            continue
        xs, losses = [x for x, _ in pairs], [loss for _, loss in pairs]
        rho = spearman(xs, losses)
        if rho is None:
            continue
        bins, ranked = bins_of(xs), ranks(losses)
        best_bin = min(bins, key=lambda b: sum(ranked[i] for i in b) / len(b))
        found.append(Correlation(
            key, len(pairs), rho, min(xs), max(xs),
            None if best is None else best[0].config.get(key), omega_squared(bins, ranked),
            (min(xs[i] for i in best_bin), max(xs[i] for i in best_bin))))
    return sorted(found, key=lambda c: (-(c.importance or 0.0), -abs(c.rho)))


def closer_axes(runs: Sequence[RunInfo], found: Sequence[Correlation],
                score: Callable[[RunInfo], float | None] = best_loss,
                ) -> tuple[RunInfo, list[str]] | None:
    """A coarse-to-fine next step: the best run, and each setting that matters
    (MATTERS) narrowed to its best bin as a sweep axis: a random axis over it (log when
    the runs' values span 10x, int when they are whole), or the bin's one value where
    the best run has another; None when there is no best run or nothing to narrow."""
    scored, best = _scored(runs, score)
    if best is None:
        return None
    axes = []
    for found_key in found:
        if found_key.importance is None or found_key.importance < MATTERS \
                or found_key.best_bin is None:
            continue
        key, (low, high) = found_key.key, found_key.best_bin
        values = [x for r, _ in scored if (x := finite(r.config.get(key))) is not None]
        whole = all(x == int(x) for x in values)
        if low == high:
            text = str(int(low)) if whole else format_number(low)
            if best[0].config.get(key) != low:
                axes.append(f"{key}={text}")
        elif whole:
            axes.append(f"{key}=int({int(low)}..{int(high)})")
        else:
            kind = "log" if spans_decades(values) else "uniform"
            axes.append(f"{key}={kind}({format_number(low)}..{format_number(high)})")
    return (best[0], axes) if axes else None


def closer_look(runs: Sequence[RunInfo], found: Sequence[Correlation]) -> list[str] | None:
    """``closer_axes`` as the words after ``traintop sweep``: ``--like`` the best run,
    the axes, and CLOSER_TRIALS trials when one of them is random."""
    closer = closer_axes(runs, found)
    if closer is None:
        return None
    best, axes = closer
    trials = ["--trials", str(CLOSER_TRIALS)] if any("(" in a for a in axes) else []
    return ["--like", best.id, *axes, *trials]
