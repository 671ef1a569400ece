"""``traintop ls --corr``: which settings go with a lower loss, over the runs listed: a
row a numeric setting, its importance, best bin and Spearman correlation
(``engine.client.importance``)."""

from __future__ import annotations

import argparse
import re
import shlex
from collections import Counter

from engine.client.client import EngineError
from engine.client.events import RunInfo
from engine.client.importance import BINS, MIN_RUNS, closer_look, correlations
from engine.common.format import format_number, format_table, json_text, shown

HEADER = ["KEY", "RUNS", "IMPORTANCE", "BEST BIN", "SPEARMAN", "LOWEST", "HIGHEST",
          "BEST RUN'S"]


def print_correlations(runs: list[RunInfo], args: argparse.Namespace) -> None:
    """``ls --corr``: a row a numeric setting of the filtered ``runs``, or ``--json``.
    Runs of several workloads are refused: their losses are on scales of their own, so
    a setting would seem to matter for being what set the workloads apart."""
    workloads = Counter(r.workload for r in runs)
    if len(workloads) > 1:
        counts = ", ".join(f"{shown(w)} ({n})" for w, n in workloads.most_common(4))
        more = f" and {len(workloads) - 4} more" if len(workloads) > 4 else ""
        # (a filter's words hold no space: '*' stands for the spaces of a command)
        first = shlex.quote("workload=" + re.sub(r"\s+", "*", workloads.most_common(1)[0][0]))
        raise EngineError("bad_request", f"--corr compares runs of one workload, whose "
                          f"losses compare; these are of {counts}{more}: narrow them with "
                          f"--sweep NAME or a filter (traintop ls --corr {first})")
    found = correlations(runs)
    if args.json:
        print(json_text([{"key": c.key, "runs": c.runs, "importance": c.importance,
                          "best_bin": c.best_bin, "spearman": c.rho, "lowest": c.lowest,
                          "highest": c.highest, "best_runs": c.at_best} for c in found]))
        return
    if not found:
        print(f"no numeric setting differs between {len(runs)} runs with a loss "
              f"(it takes {MIN_RUNS} at least)")
        return
    print(format_table(HEADER, [
        [shown(c.key), str(c.runs), "-" if c.importance is None else f"{c.importance:.2f}",
         c.bin_text, f"{c.rho:+.2f}", format_number(c.lowest), format_number(c.highest),
         shown(format_number(c.at_best))] for c in found]))
    print(f"(IMPORTANCE: how much of the order of the runs' best losses the setting "
          f"explains, any shape, from 0 to 1, over up to {BINS} bins of its values; "
          "BEST BIN: the values of the bin whose runs did best; SPEARMAN: -1, the loss "
          "falls as the setting grows; +1, it rises; 0, no order, or a U)")
    closer = closer_look(runs, found)
    if closer is not None:
        print(f"(a closer look: traintop sweep {shlex.join(closer)})")
