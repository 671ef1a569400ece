"""When runs will be done: one run from its rate, a set of them (a sweep's, a queue's)
by giving each waiting run the first slot to come free.

The TUI's rates come from the progress it streams; the CLI's from the rate the daemon
keeps of each running run (``RunInfo.rate``). Plain functions, tested without either.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from statistics import fmean
from typing import Any

from engine.client.events import RunInfo
from engine.common.format import duration_text

Rate = Callable[[RunInfo], "float | None"]  # steps a second of a running run, if known


def seconds_left(run: RunInfo, rate: float | None) -> float | None:
    """Seconds until ``run`` reaches its last step at ``rate`` (None: unknown)."""
    if not rate or not run.total_steps:
        return None
    return max(0.0, float(run.total_steps - run.step) / rate)


def finish_in(runs: Iterable[RunInfo], rate_of: Rate) -> float | None:
    """Seconds until every run of ``runs`` that trains, starts or waits in its queue has
    ended: each waiting one, in its queue's order, takes the first slot to come free
    (as many slots as run now), at the mean rate of those running, and after them each
    trial a searched sweep has yet to make (as many steps as its runs). None while
    nothing runs or a running run's rate is not known yet (or a waiting one has no step
    count)."""
    running: list[float] = []
    rates: list[float] = []
    waiting: list[RunInfo] = []
    runs = list(runs)
    for run in runs:
        if run.state == "running":
            rate = rate_of(run)
            left = seconds_left(run, rate)
            if rate is None or left is None:
                return None
            running.append(left)
            rates.append(rate)
        elif run.state in ("starting", "queued"):
            waiting.append(run)
    if not running:
        return None
    rate = fmean(rates)
    free = sorted(running)  # when each slot comes free (sorted: a heap)
    steps = [r.total_steps and max(r.total_steps - r.step, 0)
             for r in sorted(waiting, key=lambda r: (r.state != "starting", r.queue_pos or 0.0))]
    for left in steps + trials_to_come(runs):
        if left is None:
            return None
        start = heapq.heappop(free)
        heapq.heappush(free, start + left / rate)
    return max(free)


def trials_to_come(runs: Iterable[RunInfo]) -> list[int | None]:
    """The steps of each trial the searched sweeps of ``runs`` have yet to make (as many
    as their runs have; None: not known)."""
    made: dict[str, list[RunInfo]] = {}
    for run in runs:
        if run.search and run.sweep:
            made.setdefault(run.sweep, []).append(run)
    steps: list[int | None] = []
    for trials in made.values():
        total = trials[0].search.get("trials") if trials[0].search else None
        if isinstance(total, int):
            steps += [trials[0].total_steps] * max(0, total - len(trials))
    return steps


def eta_text(seconds: float | None, rule: dict[str, Any] | None) -> str:
    """A sweep's ``finish_in`` as its ETA column says it: ``≤`` before it when the
    sweep's ``rule`` stops runs early (ASHA's, not PBT's, which keeps them training),
    so most end sooner; ``-`` for none."""
    stops = seconds is not None and bool(rule) and "interval" not in (rule or {})
    return ("≤" if stops else "") + duration_text(seconds)
