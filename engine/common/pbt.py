"""Population based training (PBT) of a sweep's runs, as Ray Tune's
``PopulationBasedTraining`` does it, built on traintop's fork.

A sweep started with ``--pbt INTERVAL`` is a population. At every INTERVAL steps
(a round), once each of its runs that is still training has got there, the runs are
ranked by their value of the metric at that step (the mean over the last twentieth of
the steps up to it, as an early-stop rung has it). Each run of the worst QUANTILE is
replaced: one of the best QUANTILE, still training, is forked at its current step (its
weights and optimizer, exactly), the fork's axes perturbed (exploit, then explore), and
the worse run is stopped. The fork joins the sweep, so the population keeps its size and
its lineage is the fork tree.

Explore: each axis of the sweep other than a seed is, with probability RESAMPLE, drawn
afresh from the sweep's own axis (a random axis from its range, a grid axis from its
values); else a number is multiplied by 0.8 or 1.2 (kept within a random axis's range;
a whole number moves by one at least), and a grid axis moves to a neighbouring value.
The draws come from the sweep, the round and the run replaced, so they can be replayed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.common.config import parse_literal
from engine.common.early_stop import StopRule, judged_problem
from engine.common.format import format_number
from engine.common.settings import is_seed_key
from engine.common.sweep import RandomAxis, SweepError, SweepSpec, parse_random

DEFAULT_QUANTILE = 0.25
DEFAULT_RESAMPLE = 0.25
FACTORS = (0.8, 1.2)  # what a number is multiplied by, one or the other
NOTHING_TO_PERTURB = ("--pbt: nothing to perturb: give the sweep an axis other than a seed "
                      "(lr=log(1e-4..1e-2), batch=32,64)")
_FIELDS = {"interval", "quantile", "resample", "metric", "mode", "axes"}


@dataclass(frozen=True)
class PbtRule:
    """When a population's runs are ranked, on what, and what may change in a fork.

    ``axes`` maps each key to perturb to its axis as the sweep gave it: the values of a
    grid axis (as text), or a random axis's text (``log(1e-4..1e-2)``). With none, a fork
    copies its parent as it is (the command line refuses that: ``NOTHING_TO_PERTURB``).
    """

    label: ClassVar[str] = "pbt"  # what ``show`` and a dry run call the rule
    interval: int
    quantile: float = DEFAULT_QUANTILE
    resample: float = DEFAULT_RESAMPLE
    metric: str | None = None  # None: the run's training loss
    mode: str = "min"
    axes: Mapping[str, list[str] | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = rule_problem(self)
        if problem:
            raise ValueError(problem)

    def rungs(self, total: int | None) -> Iterator[int]:
        """The rounds, in steps, below ``total`` (None: no end known)."""
        rung = self.interval
        while total is None or rung < total:
            yield rung
            rung += self.interval

    def wire(self) -> dict[str, Any]:
        return {"interval": self.interval, "quantile": self.quantile,
                "resample": self.resample, "metric": self.metric, "mode": self.mode,
                "axes": dict(self.axes)}

    @classmethod
    def from_wire(cls, data: Any) -> PbtRule:
        """A rule as a request or a stored row gives it; ValueError, in words, if it is not one."""
        if not isinstance(data, dict) or "interval" not in data or not set(data) <= _FIELDS:
            raise ValueError("pbt must be an object of interval, quantile, resample, metric, "
                             "mode and axes")
        interval, axes = data["interval"], data.get("axes", {})
        quantile = data.get("quantile", DEFAULT_QUANTILE)
        resample = data.get("resample", DEFAULT_RESAMPLE)
        if not isinstance(interval, int) or isinstance(interval, bool):
            raise ValueError("pbt: the interval must be a whole number of steps")
        if not all(isinstance(x, int | float) and not isinstance(x, bool)
                   for x in (quantile, resample)):
            raise ValueError("pbt: quantile and resample must be numbers")
        metric = data.get("metric")
        if metric is not None and not isinstance(metric, str):
            raise ValueError("pbt: the metric must be a name")
        if not isinstance(axes, dict) or not all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
            for v in axes.values()
        ):
            raise ValueError("pbt: axes must map keys to a list of values or a random axis")
        return cls(interval, float(quantile), float(resample), metric,
                   str(data.get("mode", "min")), axes)

    def describe(self, start: int = 0) -> str:
        """The rule in a few words, for ``show`` and a sweep's dry run (``start``, a fork's
        step, changes nothing: the rounds are the population's own steps)."""
        metric = self.metric or "the training loss"
        share = _share(self.quantile)
        return (f"every {self.interval} steps, the worst {share} by {metric} are replaced by "
                f"forks of the best {share}, with {', '.join(self.axes)} perturbed")


SweepRule = StopRule | PbtRule


def sweep_rule(data: Any) -> SweepRule:
    """The rule a sweep's runs keep (their ``early_stop``): PBT's has an ``interval``,
    ASHA's a ``grace``; ValueError, in words, if it is neither."""
    if isinstance(data, dict) and "interval" in data:
        return PbtRule.from_wire(data)
    return StopRule.from_wire(data)


def _share(quantile: float) -> str:
    return {0.25: "quarter", 0.5: "half", 0.2: "fifth", 0.1: "tenth"}.get(
        quantile, f"{quantile:.0%}")


def rule_problem(rule: PbtRule) -> str | None:
    """What is wrong with a rule, in one line; None: nothing."""
    if rule.interval < 1:
        return f"pbt: the interval must be 1 step or more, not {rule.interval}"
    if not 0 < rule.quantile <= 0.5:
        return f"pbt: the quantile is a share above 0 and at most 0.5, not {rule.quantile:g}"
    if not 0 <= rule.resample <= 1:
        return f"pbt: the resample probability is from 0 to 1, not {rule.resample:g}"
    judged = judged_problem("pbt", rule.metric, rule.mode)
    if judged:
        return judged
    for key, axis in rule.axes.items():
        if isinstance(axis, str):
            try:
                if parse_random(key, axis, f"{key}={axis}") is None:
                    return f"pbt: {key}={axis} is not a random axis"
            except SweepError as exc:
                return f"pbt: {exc}"
        elif len(axis) < 2:
            return f"pbt: the grid axis {key} needs two values or more"
    return None


def ranked(values: Mapping[str, float], quantile: float,
           mode: str) -> tuple[list[str], list[str]]:
    """The worst and the best ``quantile`` of runs by their ``values`` (the worst first,
    the best first); the same number of each, never overlapping, none of fewer than two."""
    order = sorted(values, key=lambda run: (values[run] if mode == "min" else -values[run], run))
    count = min(math.ceil(len(order) * quantile), len(order) // 2)
    return order[::-1][:count], order[:count]


def perturbed(rule: PbtRule, config: Mapping[str, Any],
              rng: random.Random) -> tuple[list[str], list[str]]:
    """The overrides that explore from ``config`` (a fork's parent's), and each change in
    words (``lr 0.003 → 0.0036 (x1.2)``)."""
    overrides, changes = [], []
    for key, axis in rule.axes.items():
        old = config.get(key)
        if isinstance(axis, list):
            text, how = _grid_step(axis, old, rng, rule.resample)
            new: Any = parse_literal(text)
        else:
            spec = parse_random(key, axis, f"{key}={axis}")
            assert spec is not None  # checked with the rule
            new, how = _random_step(spec, old, rng, rule.resample)
            text = repr(new)
        overrides.append(f"{key}={text}")
        changes.append(f"{key} {format_number(old)} → {format_number(new)} ({how})")
    return overrides, changes


def _grid_step(values: list[str], old: Any, rng: random.Random,
               resample: float) -> tuple[str, str]:
    """A grid axis's next value: drawn afresh, else a neighbour of ``old``'s."""
    parsed = [parse_literal(v) for v in values]
    if rng.random() < resample or old not in parsed:
        return rng.choice(values), "drawn again"
    at = parsed.index(old)
    step = rng.choice((-1, 1))
    if not 0 <= at + step < len(values):
        step = -step
    return values[at + step], "next value" if step > 0 else "previous value"


def _random_step(axis: RandomAxis, old: Any, rng: random.Random,
                 resample: float) -> tuple[float | int, str]:
    """A random axis's next value: drawn afresh from its range, else ``old`` x 0.8 or 1.2,
    kept in the range."""
    number = isinstance(old, int | float) and not isinstance(old, bool) and math.isfinite(old)
    if rng.random() < resample or not number:
        return parse_literal(axis.sample(rng)), "drawn again"
    factor = rng.choice(FACTORS)
    if axis.kind == "int":
        moved = round(old * factor)
        if moved == old:  # a small whole number: 0.8x and 1.2x round back to it
            moved = old + (1 if factor > 1 else -1)
        new: float | int = int(min(max(moved, axis.low), axis.high))
    else:
        new = min(max(old * factor, axis.low), axis.high)
    return new, f"x{factor:g}"


def axes_of(spec: SweepSpec) -> dict[str, list[str] | str]:
    """The axes a PBT rule perturbs: a sweep's grid and random axes but its seeds."""
    axes: dict[str, list[str] | str] = {
        k: list(v) for k, v in spec.grid.items() if not is_seed_key(k)
    }
    axes.update({k: v.text() for k, v in spec.random.items() if not is_seed_key(k)})
    return axes
