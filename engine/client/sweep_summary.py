"""How a sweep stands, from its runs: how many in each state (a run its rule stopped
counted as such, not as killed), and its best run. ``traintop ls --sweeps`` lists it;
the TUI says it once a sweep's last run has ended."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.client.events import RunInfo
from engine.client.run_select import RUN_SORTS
from engine.common.format import format_number, shown
from engine.common.runs import stopped_as

best_loss = RUN_SORTS["best"]  # a run's lowest training loss, if a finite one


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


def search_text(runs: Sequence[RunInfo]) -> str | None:
    """A searched sweep's trials made of all it will make (``tpe 14/40``), from its runs
    (the first holds the rule); None for a sweep that is not searched."""
    search = runs[0].search if runs else None
    if not search:
        return None
    made = sum(1 for run in runs if run.search)
    return f"{search.get('method')} {made}/{search.get('trials')}"


def lowest(scored: Iterable[tuple[RunInfo, float]]) -> tuple[RunInfo, float] | None:
    """The (run, score) of the lowest score (a tie: the lower id); None for none."""
    return min(scored, key=lambda found: (found[1], found[0].id), default=None)


def best_of(runs: Iterable[RunInfo]) -> tuple[RunInfo, float] | None:
    """The run with the lowest best training loss, and that loss (a tie: the lower id);
    None: none has a loss yet."""
    return lowest((run, loss) for run in runs if (loss := best_loss(run)) is not None)


def ended_line(runs: Sequence[RunInfo]) -> str:
    """What a sweep that has ended came to: '12 runs: 9 stopped early, 3 finished; best
    a1b2c3 lr=0.01 at loss 2.123'."""
    best = best_of(runs)
    line = f"{len(runs)} run{'s' if len(runs) != 1 else ''}: {states_text(runs)}"
    if best is not None:
        run, loss = best
        line += f"; best {run.id} {shown(run.name)} at loss {format_number(loss)}"
    return line
