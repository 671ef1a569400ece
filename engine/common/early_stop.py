"""Early stopping of a sweep's runs: asynchronous successive halving (ASHA), in the form
that stops runs, as Ray Tune's ``ASHAScheduler`` and W&B's ``early_terminate`` do.

A sweep started with ``--early-stop GRACE`` has rungs at GRACE, GRACE x ETA,
GRACE x ETA², ... steps (those below a run's total). When a run passes a rung, its
value of the metric there is recorded for the sweep, and the run goes on only if it
is among the best ⌈n / ETA⌉ of the n runs that have reached that rung so far; else it
is stopped. Until ETA runs have reached a rung, every run passes it: a run is never
stopped for being behind one or two others.

The value at a rung is the mean of the metric's points in the last twentieth of the
steps up to it (at rung 300: steps 286 to 300), so one noisy step decides nothing; a
metric logged more rarely than that (a validation loss) counts by its latest point.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

DEFAULT_ETA = 3
MODES = ("min", "max")


@dataclass(frozen=True)
class StopRule:
    """When a sweep's runs are judged, on what, and which way is better."""

    label: ClassVar[str] = "early stop"  # what ``show`` and a dry run call the rule
    grace: int  # the first rung, in steps
    eta: int = DEFAULT_ETA  # each rung keeps the best 1/eta of the runs that reach it
    metric: str | None = None  # None: the run's training loss (the LOSS column's)
    mode: str = "min"  # 'min': lower is better; 'max': higher is

    def __post_init__(self) -> None:
        problem = rule_problem(self.grace, self.eta, self.metric, self.mode)
        if problem:
            raise ValueError(problem)

    def rungs(self, total: int | None) -> Iterator[int]:
        """The rungs, in steps, below ``total`` (None: no end known)."""
        rung = self.grace
        while total is None or rung < total:
            yield rung
            rung *= self.eta

    def wire(self) -> dict[str, Any]:
        return {"grace": self.grace, "eta": self.eta, "metric": self.metric, "mode": self.mode}

    @classmethod
    def from_wire(cls, data: Any) -> StopRule:
        """A rule as a request or a stored row gives it; ValueError, in words, if it is not one."""
        if not isinstance(data, dict) or not set(data) <= {"grace", "eta", "metric", "mode"}:
            raise ValueError("early_stop must be an object of grace, eta, metric and mode")
        grace: Any = data.get("grace")
        eta: Any = data.get("eta", DEFAULT_ETA)
        metric, mode = data.get("metric"), data.get("mode", "min")
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (grace, eta)):
            raise ValueError("early stop: grace and eta must be whole numbers")
        if metric is not None and not isinstance(metric, str):
            raise ValueError("early stop: the metric must be a name")
        return cls(grace, eta, metric, str(mode))

    def describe(self, start: int = 0) -> str:
        """The rule in a few words, for ``show`` and a sweep's dry run (``start``: the
        step a fork began at; its rungs count from there)."""
        metric = self.metric or "the training loss"
        better = "lowest" if self.mode == "min" else "highest"
        since = f" ({self.grace} after its fork step)" if start else ""
        return (f"from step {start + self.grace}{since}, every x{self.eta} steps, runs not "
                f"among the {better} 1/{self.eta} of {metric} stop")


def rule_problem(grace: int, eta: int, metric: str | None, mode: str) -> str | None:
    """What is wrong with a rule, in one line; None: nothing."""
    if grace < 1:
        return f"early stop: the first rung must be at step 1 or later, not {grace}"
    if eta < 2:
        return f"early stop: eta must be 2 or more (each rung keeps 1/eta), not {eta}"
    return judged_problem("early stop", metric, mode)


def judged_problem(what: str, metric: str | None, mode: str) -> str | None:
    """What is wrong with the metric a sweep's runs are judged by, and its direction (for
    early stopping and PBT alike: ``what`` names which); None: nothing."""
    if mode not in MODES:
        return f"{what}: the mode is min or max, not {mode!r}"
    if metric is not None and not metric.strip():
        return f"{what}: the metric's name is empty"
    return None


def window(rung: int) -> int:
    """How many steps before a rung its value is averaged over (one twentieth)."""
    return max(1, rung // 20)


def kept(count: int, eta: int) -> int:
    """How many of ``count`` runs at a rung go on."""
    return math.ceil(count / eta)


def cutoff(values: Sequence[float], eta: int, mode: str) -> float | None:
    """The worst value that still goes on at a rung that holds ``values`` (the judged run's
    among them); None while fewer than ``eta`` runs have reached it: all go on."""
    if len(values) < eta:
        return None
    ranked = sorted(values, reverse=mode == "max")
    return ranked[kept(len(values), eta) - 1]


def stop_reason(rule: StopRule, metric: str, rung: int, value: float,
                values: Sequence[float]) -> str | None:
    """Why a run whose ``value`` at ``rung`` is one of ``values`` stops; None: it goes on."""
    line = cutoff(values, rule.eta, rule.mode)
    if line is None:
        return None
    worse = value > line if rule.mode == "min" else value < line
    if not worse:
        return None
    best = "lowest" if rule.mode == "min" else "highest"
    return (f"stopped early at step {rung}: {metric} {value:.4g} is not among the {best} "
            f"{kept(len(values), rule.eta)} of the {len(values)} runs there (cutoff {line:.4g})")


def logged_text(keys: list[str], at_most: int = 8) -> str:
    """The metrics a run logs, as said beside one it lacks: 'it logs loss, acc'."""
    if not keys:
        return "it logs nothing yet"
    more = f" and {len(keys) - at_most} more" if len(keys) > at_most else ""
    return f"it logs {', '.join(keys[:at_most])}{more}"
