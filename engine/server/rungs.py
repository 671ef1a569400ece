"""The rungs of an early-stopped sweep, as the daemon watches one run pass them.

The daemon reads every point a run logs (``run_reports``); a run of a sweep with a
``StopRule`` has a ``RungWatch`` that says, as the points go by, each rung the run has
passed and its value there (``engine.common.early_stop`` has the rule). The values are
kept in the store's ``rungs`` table, so a restarted daemon judges against them too.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from engine.common.early_stop import window
from engine.common.output_lines import training_loss_key
from engine.common.pbt import PbtRule, SweepRule, sweep_rule
from engine.rundir.spool_records import Metric


class RungWatch:
    """Follows one run's metric and says each rung it passes, with its value there."""

    def __init__(self, rule: SweepRule, total: int | None, done: Iterable[int] = (),
                 start: int = 0) -> None:
        """``start``: the step the run began at; ASHA's rungs count the steps it trained
        from there (forks made together, ``fork RUN lr=A,B --early-stop G``, are judged
        G steps after their fork step), PBT's rounds are the population's own steps."""
        self.rule = rule
        self.keys: set[str] = set()
        self.key = rule.metric
        finished = set(done)  # rungs judged before (a restarted daemon)
        self.start = 0 if isinstance(rule, PbtRule) else start
        left = None if total is None else total - self.start
        self._rungs: Iterator[int] = (self.start + r for r in rule.rungs(left)
                                      if self.start + r not in finished)
        self.next: int | None = next(self._rungs, None)
        self._recent: deque[tuple[int, float]] = deque()  # points near the next rung
        self._last: float | None = None
        # A metric the rule names, looked for until it shows or the first rung goes by
        # without it (a misspelt --stop-metric: then ``missing`` says what the run logs).
        self._looking = rule.metric is not None
        self.missing: tuple[int, list[str]] | None = None

    def check(self, points: Iterable[Metric]) -> list[tuple[int, float]]:
        """Take in a batch of points; the rungs they carry the run past, with its value at
        each (a rung with no value of the metric before it is passed without one)."""
        points = list(points)
        if self._looking:
            self._look_for_metric(points)
        if self.rule.metric is None and not self.keys.issuperset(p[1] for p in points):
            self.keys.update(p[1] for p in points)
            key = training_loss_key(self.keys)
            if key != self.key:
                self.key, self._last = key, None
                self._recent.clear()
        passed: list[tuple[int, float]] = []
        for step, key, value, _ in points:
            if key != self.key or not math.isfinite(value):
                continue
            while self.next is not None and step > self.next:
                at = self._value_at(self.next)
                if at is not None:
                    passed.append((self.next, at))
                self.next = next(self._rungs, None)
            if self.next is None:
                break
            self._last = value
            self._recent.append((step, value))
            while self._recent and self._recent[0][0] <= self.next - self._window(self.next):
                self._recent.popleft()
        return passed

    def _look_for_metric(self, points: list[Metric]) -> None:
        """Note the rung passed before the rule's metric showed, and the keys logged."""
        if any(key == self.key for _, key, _, _ in points):
            self._looking = False
            return
        self.keys.update(key for _, key, _, _ in points)
        if self.next is not None and points and points[-1][0] > self.next:
            self._looking = False
            self.missing = (self.next, sorted(self.keys))

    def take_missing(self) -> tuple[int, list[str]] | None:
        """The first rung passed without the rule's metric, and the keys the run logs
        instead, once (None: nothing to say)."""
        missing, self.missing = self.missing, None
        return missing

    def _window(self, rung: int) -> int:
        return window(rung - self.start)

    def _value_at(self, rung: int) -> float | None:
        near = [v for s, v in self._recent if rung - self._window(rung) < s <= rung]
        return sum(near) / len(near) if near else self._last


def rule_of(run: dict[str, Any]) -> SweepRule | None:
    """A stored run's rule (its ``early_stop`` column, decoded: ASHA's or PBT's), or None."""
    rule = run.get("early_stop")
    return sweep_rule(rule) if rule else None
