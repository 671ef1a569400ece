"""What a PBT round costs the daemon as a population grows.
Run: ``.venv/bin/python bench/pbt_rounds.py [--runs 500] [--rounds 5]``.

Every value a run of a PBT sweep records at a round makes the daemon ask whether the
round is complete (``Population.judge_rounds``: the round's values, and each member's
state). The baseline, measured in the same run on the same store, is what an
early-stopped (ASHA) sweep pays for the same value: ``record_rung`` and reading the
rung's values back (``rung_values``), all it is judged against. The store
is real (SQLite, on a temporary directory) with ``--runs`` running members, plus
``--others`` runs of other sweeps in the table; the judging itself (ranking, then a
fork per run replaced) is left out: no run here has a process to fork.

Prints the time per value recorded, PBT's against ASHA's, and the whole cost of a
round of ``--runs`` values (the daemon's tick does other work between them).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.common.pbt import PbtRule
from engine.server.population import Population
from engine.server.store import Store


class _Round(Population):
    """The daemon's round keeping, with no live processes (``live`` empty)."""

    def __init__(self, store: Store) -> None:
        self.store, self.live, self.fork_run = store, {}, None
        self.judged = 0

    def _replace_worst(self, sweep: str, rule: PbtRule, step: int,
                       values: dict[str, float]) -> None:
        self.judged += 1  # the part this leaves out: ranking and forking


def _members(store: Store, sweep: str, count: int, state: str) -> list[str]:
    ids = [f"{sweep[:2]}{i:04d}" for i in range(count)]
    for run_id in ids:
        store.create_run({"id": run_id, "name": run_id, "workload": "synthetic",
                          "config": {"lr": 0.1, "steps": 10_000}, "state": state,
                          "device": "cpu", "cwd": "/", "created": time.time(),
                          "released": False, "total_steps": 10_000, "sweep": sweep,
                          "step": 0}, "made by the bench")
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="members of the population")
    parser.add_argument("--others", type=int, default=500, help="runs of other sweeps")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rule = PbtRule(100, axes={"lr": "log(0.0001..0.1)"})
    with tempfile.TemporaryDirectory() as home:
        store = Store(Path(home) / "store.sqlite")
        pbt = _members(store, "pop", args.runs, "running")
        asha = _members(store, "asha", args.runs, "running")
        _members(store, "old", args.others, "finished")
        rounds = _Round(store)
        per_value: dict[str, list[float]] = {"asha": [], "pbt": []}
        for r in range(1, args.rounds + 1):
            step = r * rule.interval
            for i in range(args.runs):
                began = time.perf_counter()
                store.record_rung("asha", step, asha[i], 1.0 + i)
                store.rung_values("asha", step)
                per_value["asha"].append(time.perf_counter() - began)
                store.update_run(pbt[i], step=step + 1)  # past it, as the tick stores it
                began = time.perf_counter()
                store.record_rung("pop", step, pbt[i], 1.0 + i)
                rounds.judge_rounds("pop", rule)
                per_value["pbt"].append(time.perf_counter() - began)
        store.close()
    med: dict[str, Any] = {k: statistics.median(v) * 1e6 for k, v in per_value.items()}
    print(f"population {args.runs} running, {args.others} other runs, {args.rounds} rounds")
    print(f"rounds judged: {rounds.judged} of {args.rounds}")
    for kind in ("asha", "pbt"):
        total = sum(per_value[kind]) / args.rounds * 1e3
        print(f"{kind:>4}: {med[kind]:7.0f} µs a value (median), {total:6.0f} ms a round")
    print(f"pbt / asha: {med['pbt'] / med['asha']:.1f}x a value")
    return 0 if rounds.judged == args.rounds else 1


if __name__ == "__main__":
    raise SystemExit(main())
