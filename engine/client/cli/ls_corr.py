"""``traintop ls --corr``: which settings go with a lower loss, over the runs listed.

For each numeric config key whose value differs between the runs, Spearman's rank
correlation with each run's best training loss (W&B's parameter correlation, on
ranks, so a log-scaled ``lr`` counts as much as a linear ``batch``): -1, the loss
falls as the setting grows; +1, it rises; near 0, no order between them. Seeds are
left out (config keys ending in ``seed``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.client.events import RunInfo
from engine.client.run_select import finite
from engine.client.sweep_summary import best_loss, best_of
from engine.common.config_diff import config_diff
from engine.common.format import format_number, format_table, json_text, shown
from engine.common.settings import is_seed_key

HEADER = ["KEY", "RUNS", "SPEARMAN", "LOWEST", "HIGHEST", "BEST RUN'S"]
MIN_RUNS = 3  # fewer pairs say nothing about an order


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


@dataclass(frozen=True)
class Correlation:
    key: str
    runs: int  # runs with a number for the key and a best loss
    rho: float
    lowest: float
    highest: float
    at_best: Any  # the key's value in the run of the lowest best loss


def correlations(runs: Sequence[RunInfo]) -> list[Correlation]:
    """Each numeric setting that differs between ``runs`` against their best loss, the
    strongest (by size) first."""
    scored = [(r, loss) for r in runs if (loss := best_loss(r)) is not None]
    best = best_of(r for r, _ in scored)
    found = []
    for key in config_diff([r.config for r, _ in scored]):
        if is_seed_key(key):
            continue
        pairs = [(x, loss) for r, loss in scored if (x := finite(r.config.get(key))) is not None]
        if len(pairs) < MIN_RUNS:
            continue
        rho = spearman([x for x, _ in pairs], [loss for _, loss in pairs])
        if rho is not None:
            xs = [x for x, _ in pairs]
            found.append(Correlation(key, len(pairs), rho, min(xs), max(xs),
                                     None if best is None else best[0].config.get(key)))
    return sorted(found, key=lambda c: -abs(c.rho))


def print_correlations(runs: list[RunInfo], args: argparse.Namespace) -> None:
    """``ls --corr``: a row a numeric setting of the filtered ``runs``, or ``--json``."""
    found = correlations(runs)
    if args.json:
        print(json_text([{"key": c.key, "runs": c.runs, "spearman": c.rho, "lowest": c.lowest,
                          "highest": c.highest, "best_runs": c.at_best} for c in found]))
        return
    if not found:
        print(f"no numeric setting differs between {len(runs)} runs with a loss "
              f"(it takes {MIN_RUNS} at least)")
        return
    print(format_table(HEADER, [
        [shown(c.key), str(c.runs), f"{c.rho:+.2f}", format_number(c.lowest),
         format_number(c.highest), shown(format_number(c.at_best))] for c in found]))
    print("(Spearman's rank correlation with each run's best loss: -1, the loss falls as "
          "the setting grows; +1, it rises; 0, no order)")
