"""``traintop ls --sweeps``: one row a sweep, as W&B's sweeps page lists them: how many
runs and in which states, its best run and that run's best loss, its rule (early
stopping or PBT), its queue, and when it was made.

The runs are filtered as ``ls`` filters them first, so ``--state live`` lists the sweeps
still training (counting only their live runs) and ``--since 1d`` today's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.client.eta import eta_text, finish_in
from engine.client.events import RunInfo
from engine.client.run_select import ordered
from engine.client.sweep_summary import best_of, search_text, state_counts, states_text
from engine.common.format import (
    SHOWN_NAME,
    format_number,
    format_table,
    json_text,
    shown,
)

HEADER = ["SWEEP", "RUNS", "STATES", "BEST", "BEST RUN", "ETA", "RULE", "QUEUE", "MADE"]
SWEEP_SORTS = ("created", "name", "runs", "best")


@dataclass(frozen=True)
class Sweep:
    """The runs of one sweep that the filters kept, in creation order."""

    name: str
    runs: tuple[RunInfo, ...]

    def rule(self) -> str:
        """Its rule in a word and a number: 'asha 100' (first rung), 'pbt 50' (interval),
        'tpe 14/40' (trials made of those it will make), or two: 'tpe 14/40, asha 100'."""
        rule, search = self.runs[0].early_stop, search_text(self.runs)
        said = [search] if search else []
        if rule:
            said.append(f"pbt {rule['interval']}" if "interval" in rule
                        else f"asha {rule.get('grace')}")
        return ", ".join(said) or "-"

    def seconds_left(self) -> float | None:
        """When its runs still to train will all have ended, at the rates the daemon
        keeps (``engine.client.eta``); None: nothing trains, or no rate yet."""
        return finish_in(self.runs, lambda run: run.rate)

    def eta(self) -> str:
        """``seconds_left`` as the ETA column says it (``eta_text``)."""
        return eta_text(self.seconds_left(), self.runs[0].early_stop)

    def queues(self) -> list[str]:
        """The queues its runs are in, each once."""
        return list(dict.fromkeys(r.queue for r in self.runs))


def sweeps_of(runs: Sequence[RunInfo]) -> list[Sweep]:
    """The sweeps ``runs`` belong to, each with its runs, in the order first made."""
    found: dict[str, list[RunInfo]] = {}
    for run in runs:
        if run.sweep:
            found.setdefault(run.sweep, []).append(run)
    return [Sweep(name, tuple(kept)) for name, kept in found.items()]


def _sort_key(sweep: Sweep, sort: str) -> Any:
    """How a sweep orders by ``sort``: name, runs or best ("created" is the order
    ``sweeps_of`` gives them in)."""
    if sort == "name":
        return sweep.name.lower()
    if sort == "runs":
        return len(sweep.runs)
    best = best_of(sweep.runs)
    return None if best is None else best[1]


def print_sweeps(runs: list[RunInfo], args: argparse.Namespace, listed: int) -> None:
    """``ls --sweeps``: a row a sweep of ``runs`` (already filtered), sorted and cut as
    ``ls`` sorts runs; or ``-q`` (their names) and ``--json``."""
    every = sweeps_of(runs)
    sweeps = ordered(every, lambda s: _sort_key(s, args.sort), args.sort,
                     args.reverse, args.limit)
    if args.json:
        print(json_text([_to_wire(s) for s in sweeps]))
        return
    if args.quiet:
        if sweeps:
            print("\n".join(s.name for s in sweeps))
        return
    if not sweeps:
        print("no sweeps yet: try 'traintop sweep charlm lr=1e-3,3e-3'" if not listed
              else f"no sweep among the {len(runs)} runs that match")
        return
    rows = []
    for sweep in sweeps:
        best = best_of(sweep.runs)
        rows.append([
            shown(sweep.name, SHOWN_NAME), str(len(sweep.runs)), states_text(sweep.runs),
            "-" if best is None else format_number(best[1]),
            "-" if best is None else f"{best[0].id} {shown(best[0].name, SHOWN_NAME)}",
            sweep.eta(), sweep.rule(), shown(",".join(sweep.queues()), SHOWN_NAME),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(min(r.created for r in sweep.runs))),
        ])
    print(format_table(HEADER, rows))
    alone = sum(1 for r in runs if not r.sweep)
    cut = f" (of {len(every)})" if len(sweeps) < len(every) else ""
    outside = f"; {alone} run{'s' if alone != 1 else ''} in no sweep" if alone else ""
    print(f"({len(sweeps)} sweep{'s' if len(sweeps) != 1 else ''}{cut} of "
          f"{sum(len(s.runs) for s in sweeps)} runs{outside}; "
          "'traintop ls --sweep NAME --sort best' ranks a sweep's runs)")


def _to_wire(sweep: Sweep) -> dict[str, Any]:
    best = best_of(sweep.runs)
    return {
        "sweep": sweep.name,
        "runs": [r.id for r in sweep.runs],
        "states": state_counts(sweep.runs),
        "best": None if best is None else {"id": best[0].id, "name": best[0].name,
                                           "loss": best[1]},
        "early_stop": sweep.runs[0].early_stop,
        "seconds_left": sweep.seconds_left(),
        "queues": sweep.queues(),
        "created": min(r.created for r in sweep.runs),
    }
