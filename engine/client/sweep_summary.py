"""How a sweep stands, from its runs: how many in each state (a run its rule stopped
counted as such, not as killed), and its best run. ``traintop ls --sweeps`` lists it;
the TUI says it once a sweep's last run has ended."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.client.events import RunInfo
from engine.client.run_select import RUN_COLUMNS
from engine.common.format import format_number, shown
from engine.common.runs import stopped_as

_best = RUN_COLUMNS["best"]  # a run's lowest training loss


def ended_as(run: RunInfo) -> str:
    """The run's state, or how its sweep's rule stopped it ('stopped early', ...)."""
    return stopped_as(run.stopped_early) if run.stopped_early else run.state


def state_counts(runs: Iterable[RunInfo]) -> dict[str, int]:
    """How many runs are in each state (``ended_as``), the most first."""
    counts: dict[str, int] = {}
    for run in runs:
        state = ended_as(run)
        counts[state] = counts.get(state, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def states_text(runs: Iterable[RunInfo]) -> str:
    """'91 stopped early, 19 killed, 10 finished'."""
    return ", ".join(f"{n} {state}" for state, n in state_counts(runs).items())


def best_of(runs: Iterable[RunInfo]) -> RunInfo | None:
    """The run with the lowest best training loss (None: none has a loss yet)."""
    scored = [r for r in runs if isinstance(_best(r), int | float)]
    return min(scored, key=lambda r: float(_best(r))) if scored else None


def best_loss(run: RunInfo) -> float:
    """The run's lowest training loss (of a run ``best_of`` chose)."""
    return float(_best(run))


def ended_line(runs: Sequence[RunInfo]) -> str:
    """What a sweep that has ended came to: '12 runs: 9 stopped early, 3 finished; best
    a1b2c3 lr=0.01 at loss 2.123'."""
    best = best_of(runs)
    line = f"{len(runs)} run{'s' if len(runs) != 1 else ''}: {states_text(runs)}"
    if best is not None:
        line += f"; best {best.id} {shown(best.name)} at loss {format_number(best_loss(best))}"
    return line
