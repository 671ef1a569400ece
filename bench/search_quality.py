"""Does the TPE search find better hyper-parameters than random search, for the same trials?
Run: ``.venv/bin/python bench/search_quality.py [--seeds 30] [--budgets 20,40,100]``.

Nothing trains: each trial is scored by a synthetic objective written in Python, so the
search itself is all that is measured. The objectives mimic sweeps people run, each with
a known best value:

- mixed: lr log(1e-05..0.1), width int(16..512), dropout uniform(0.0..0.5), optimizer
  sgd/adam/rms (a grid axis) and wd log(1e-06..0.01); a bowl in each, the best lr
  depending on the optimizer (an interaction a per-axis search cannot model), plus
  Gaussian noise;
- valley: lr log(1e-06..1.0) whose best, 1e-3, sits mid-range in a valley 0.15 decades
  wide on a gentle slope, and a batch grid axis that matters a little;
- useless: a bowl in lr and wd, plus warmup int(0..2000), act (a grid axis) and a seed
  axis that change nothing: TPE must not be misled by them;
- coupled: lr log(1e-05..0.1), batch 16..1024 (a grid axis) and warmup int(0..2000), the
  best lr and warmup growing with the batch (the linear scaling rule): a valley along a
  diagonal, which each axis alone sees as a wide flat bowl;
- accuracy: mode max, the best at the top end of epochs int(1..50), a bowl in lr and
  in label smoothing.

For each objective and each seed (``--seeds``, default 30) four searches run up to the
largest budget (``--budgets``, default 20, 40 and 100 trials; a search's first N trials do
not depend on what comes after, so every budget is read off the same run):

1. random: trial i is ``draw_random`` with ``random.Random(f"{seed}:{i}")``;
2. tpe: the first ``--startup`` (default 10) as random's, then ``propose`` with that same
   stream, given every trial so far (one run at a time), the axes learned together (the
   daemon's way);
3. tpe 1d: the same with each axis learned on its own (``joint=False``: Optuna's default,
   and this search's before), printed beside it, not judged;
4. tpe with ``--parallel`` K runs at once (default 4), as the daemon uses it: trial i is
   proposed while the K-1 before it are still training, so from trials 0..i-K only.

Values come back as override text and are read with ``parse_literal``, as a run's config
holds them; each trial is an ended ``Trial`` (complete, 1000 steps) whose value is the
objective plus its noise (the same noise for trial i of every search). A search's pick
at a budget is the trial ``ranked`` puts first, by the noisy value it saw; its regret is
how far that trial's noiseless value is from the objective's best. Printed per objective
and budget: the mean and median regret of each search, TPE's mean regret / random's, and
on how many seeds TPE's pick was better than random's (random is the baseline, run in
the same process on the same seeds).

Then the time ``propose`` takes with 100 and with 500 ended trials over mixed's five
axes (the daemon proposes each time a trial ends), the median of 20, against
``draw_random``'s.

Targets (PASS or MISS; exit status 1 on a MISS):

- at the 40- and at the 100-trial budget, the geometric mean over the objectives of
  TPE's mean regret / random's is below 1.0 (one run at a time; the parallel row is
  printed beside it, not judged);
- a proposal takes under 50 ms, with 100 and with 500 ended trials.

The searches are spread over ``--jobs`` processes (default: one per core); the run takes
about 20 s on two cores.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from engine.common.config import parse_literal
from engine.common.search import Axis, SearchRule, Trial, draw_random, propose, ranked

GATED_BUDGETS = (40, 100)  # where TPE must beat random on average
RATIO_TARGET = 1.0
PROPOSE_TARGET_MS = 50.0
TIMED_AT = (100, 500)  # ended trials when a proposal is timed
TIMED_REPEATS = 20
STEPS = 1000  # every simulated trial trains to its end


@dataclass(frozen=True)
class Objective:
    """A synthetic sweep: its axes, which way is better, its noiseless score, the config
    where that score is best, and the spread of the noise added to each trial."""

    name: str
    axes: Mapping[str, Axis]
    mode: str
    score: Callable[[Mapping[str, Any]], float]
    optimum: Mapping[str, Any]
    noise: float

    @property
    def best(self) -> float:
        return self.score(self.optimum)

    def regret(self, config: Mapping[str, Any]) -> float:
        """How much worse than the best a config's noiseless score is (0: the best)."""
        gap = self.score(config) - self.best
        return gap if self.mode == "min" else -gap


# -- the objectives (module level, so worker processes can find them by name) --------

_LR_BY_OPTIMIZER = {"sgd": 3e-2, "adam": 1e-3, "rms": 3e-4}
_OPTIMIZER_COST = {"sgd": 0.15, "adam": 0.0, "rms": 0.05}


def _mixed(c: Mapping[str, Any]) -> float:
    opt = c["optimizer"]
    return float(0.25 * math.log10(c["lr"] / _LR_BY_OPTIMIZER[opt]) ** 2
            + 0.08 * math.log2(c["width"] / 256) ** 2
            + 1.5 * (c["dropout"] - 0.1) ** 2
            + 0.02 * (math.log10(c["wd"]) + 4) ** 2
            + _OPTIMIZER_COST[opt])


def _valley(c: Mapping[str, Any]) -> float:
    off = math.log10(c["lr"]) + 3  # decades from the best lr
    return (1 - math.exp(-((off / 0.15) ** 2)) + 0.03 * off ** 2
            + 0.05 * abs(math.log2(c["batch"] / 64)))


def _useless(c: Mapping[str, Any]) -> float:
    # warmup, act and seed are read, and change nothing
    _ = (c["warmup"], c["act"], c["seed"])
    return 0.3 * (math.log10(c["lr"]) + 2.5) ** 2 + 0.1 * (math.log10(c["wd"]) + 4) ** 2


def _coupled(c: Mapping[str, Any]) -> float:
    # The best lr grows with the batch (the linear scaling rule), and so does the best
    # warmup: a valley along a diagonal, which each axis alone sees as a wide flat bowl.
    batch = math.log2(c["batch"] / 64)
    off = math.log10(c["lr"]) - (-3 + 0.3 * batch)
    return float(2.0 * off ** 2 + 0.02 * (batch - 2) ** 2
                 + 0.5 * (c["warmup"] / 1000 - 0.2 * (batch + 2)) ** 2)


def _accuracy(c: Mapping[str, Any]) -> float:
    return float(0.92 - 0.04 * (math.log10(c["lr"]) + 1.5) ** 2
            - 0.3 * math.exp(-c["epochs"] / 8)
            - 0.5 * (c["smoothing"] - 0.1) ** 2)


OBJECTIVES = {o.name: o for o in (
    Objective("mixed", {"lr": "log(1e-05..0.1)", "width": "int(16..512)",
                        "dropout": "uniform(0.0..0.5)", "optimizer": ["sgd", "adam", "rms"],
                        "wd": "log(1e-06..0.01)"},
              "min", _mixed,
              {"lr": 1e-3, "width": 256, "dropout": 0.1, "optimizer": "adam", "wd": 1e-4},
              0.02),
    Objective("valley", {"lr": "log(1e-06..1.0)", "batch": ["32", "64", "128", "256"]},
              "min", _valley, {"lr": 1e-3, "batch": 64}, 0.01),
    Objective("useless", {"lr": "log(1e-05..0.1)", "wd": "log(1e-06..0.01)",
                          "warmup": "int(0..2000)", "act": ["relu", "gelu", "silu", "tanh"],
                          "seed": "int(0..9999)"},
              "min", _useless,
              {"lr": 10 ** -2.5, "wd": 1e-4, "warmup": 0, "act": "relu", "seed": 0}, 0.01),
    Objective("coupled", {"lr": "log(1e-05..0.1)", "batch": ["16", "32", "64", "128", "256",
                                                              "512", "1024"],
                          "warmup": "int(0..2000)"},
              "min", _coupled, {"lr": 10 ** -2.4, "batch": 256, "warmup": 800}, 0.01),
    Objective("accuracy", {"lr": "log(0.0001..0.3)", "epochs": "int(1..50)",
                           "smoothing": "uniform(0.0..0.3)"},
              "max", _accuracy, {"lr": 10 ** -1.5, "epochs": 50, "smoothing": 0.1}, 0.005),
)}


# -- one seed of one objective --------------------------------------------------------

@dataclass(frozen=True)
class Task:
    objective: str
    seed: int
    budgets: tuple[int, ...]
    startup: int
    parallel: int


def rule_of(objective: Objective, trials: int, startup: int) -> SearchRule:
    return SearchRule("tpe", trials, startup, axes=dict(objective.axes),
                      mode=objective.mode)


def _search(objective: Objective, rule: SearchRule, task: Task,
            ended_before: Callable[[int], int] | None, joint: bool = True) -> list[float]:
    """One search up to the largest budget; the regret of its pick at each budget.

    ``ended_before(i)``: how many of the trials before trial i have ended when it is
    made (TPE); None: every trial is drawn at random.
    """
    trials: list[Trial] = []
    for i in range(max(task.budgets)):
        rng = random.Random(f"{task.seed}:{i}")
        if ended_before is None or i < task.startup:
            values = draw_random(rule, rng)
        else:
            ended = ended_before(i)  # the ones after it still train: pending
            values, _ = propose(rule, trials[:ended], rng, [t.config for t in trials[ended:]],
                                joint)
        config = {k: parse_literal(v) for k, v in values.items()}
        noise = random.Random(f"noise:{objective.name}:{task.seed}:{i}").gauss(0.0,
                                                                            objective.noise)
        trials.append(Trial(config, objective.score(config) + noise, True, STEPS))
    regrets = []
    for budget in task.budgets:
        pick = ranked(trials[:budget], objective.mode)[0]
        regrets.append(objective.regret(pick.config))
    return regrets


def run_task(task: Task) -> dict[str, list[float]]:
    """The four searches of one seed: method -> regret at each budget."""
    objective = OBJECTIVES[task.objective]
    rule = rule_of(objective, max(task.budgets), task.startup)
    lag = task.parallel - 1
    return {
        "random": _search(objective, rule, task, None),
        "tpe": _search(objective, rule, task, lambda i: i),
        "axis": _search(objective, rule, task, lambda i: i, joint=False),
        "parallel": _search(objective, rule, task, lambda i: max(0, i - lag)),
    }


# -- time per proposal ----------------------------------------------------------------

def time_proposals(ended: int) -> tuple[float, float]:
    """Median ms of ``propose`` and of ``draw_random`` with ``ended`` trials over mixed's
    five axes (the trials drawn at random and scored, as a long sweep's would be)."""
    objective = OBJECTIVES["mixed"]
    rule = rule_of(objective, ended + 1, 10)
    trials = []
    for i in range(ended):
        config = {k: parse_literal(v) for k, v in
                  draw_random(rule, random.Random(f"timing:{i}")).items()}
        trials.append(Trial(config, objective.score(config), True, STEPS))
    spent: dict[str, list[float]] = {"propose": [], "random": []}
    for j in range(TIMED_REPEATS):
        began = time.perf_counter()
        propose(rule, trials, random.Random(f"timed:{j}"))
        spent["propose"].append(time.perf_counter() - began)
        began = time.perf_counter()
        draw_random(rule, random.Random(f"timed:{j}"))
        spent["random"].append(time.perf_counter() - began)
    return (statistics.median(spent["propose"]) * 1e3,
            statistics.median(spent["random"]) * 1e3)


# -- report ---------------------------------------------------------------------------

def geometric_mean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(max(v, 1e-12)) for v in values))


def ratio(ours: float, theirs: float) -> float:
    if theirs <= 0:
        return 1.0 if ours <= 0 else math.inf
    return ours / theirs


def wins(ours: Sequence[float], theirs: Sequence[float]) -> str:
    won = sum(a < b for a, b in zip(ours, theirs, strict=True))
    tied = sum(a == b for a, b in zip(ours, theirs, strict=True))
    return f"{won}/{len(ours)}" + (f" ({tied} tied)" if tied else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30, help="searches per objective")
    parser.add_argument("--budgets", default="20,40,100",
                        help="trial budgets, comma-separated (default 20,40,100)")
    parser.add_argument("--startup", type=int, default=10,
                        help="trials TPE draws at random first (default 10)")
    parser.add_argument("--parallel", type=int, default=4,
                        help="runs at once in the parallel row (default 4)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: one per core)")
    args = parser.parse_args()
    budgets = tuple(sorted({int(b) for b in args.budgets.split(",") if b.strip()}))
    if not budgets or budgets[0] < 1 or args.seeds < 1 or args.startup < 1 \
            or args.parallel < 1 or args.jobs < 1:
        parser.error("budgets, seeds, startup, parallel and jobs must be 1 or more")

    began = time.perf_counter()
    tasks = [Task(name, seed, budgets, args.startup, args.parallel)
             for name in OBJECTIVES for seed in range(args.seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_task, tasks, chunksize=max(1, len(tasks) // (4 * args.jobs))))
    searched_s = time.perf_counter() - began

    par = f"tpe x{args.parallel}"
    print(f"{args.seeds} seeds per objective, TPE starts from {args.startup} random trials; "
          f"'{par}': {args.parallel} runs at once, each proposal blind to the "
          f"{args.parallel - 1} still training")
    print("regret: how far the pick's noiseless score is from the best; "
          "ratio: TPE's mean regret / random's; won: seeds where TPE's pick was better")
    # objective -> method -> budget -> ratio of mean regrets
    ratios: dict[str, dict[str, dict[int, float]]] = {}
    for name, objective in OBJECTIVES.items():
        mine = [r for t, r in zip(tasks, results, strict=True) if t.objective == name]
        print()
        print(f"{name}: {objective.mode} over {', '.join(objective.axes)}; "
              f"best {objective.best:.4f}, noise sd {objective.noise}")
        print(f"  {'trials':>6}  {'search':<8}  {'mean regret':>11}  {'median':>8}  "
              f"{'ratio':>6}  won")
        ratios[name] = {"tpe": {}, "axis": {}, "parallel": {}}
        for b, budget in enumerate(budgets):
            regrets = {m: [r[m][b] for r in mine]
                       for m in ("random", "tpe", "axis", "parallel")}
            base = statistics.fmean(regrets["random"])
            for method, label in (("random", "random"), ("tpe", "tpe"),
                                  ("axis", "tpe 1d"), ("parallel", par)):
                mean = statistics.fmean(regrets[method])
                line = (f"  {budget:>6}  {label:<8}  {mean:>11.4f}  "
                        f"{statistics.median(regrets[method]):>8.4f}")
                if method != "random":
                    ratios[name][method][budget] = ratio(mean, base)
                    line += (f"  {ratio(mean, base):>5.2f}x  "
                             f"{wins(regrets[method], regrets['random'])}")
                print(line)

    ok = True
    print()
    print(f"TPE / random mean regret, geometric mean over the {len(OBJECTIVES)} objectives "
          f"(target below {RATIO_TARGET:.2f}x at {' and '.join(map(str, GATED_BUDGETS))} "
          "trials, one run at a time):")
    for budget in budgets:
        one = geometric_mean([ratios[n]["tpe"][budget] for n in OBJECTIVES])
        many = geometric_mean([ratios[n]["parallel"][budget] for n in OBJECTIVES])
        alone = geometric_mean([ratios[n]["axis"][budget] for n in OBJECTIVES])
        line = (f"  {budget:>4} trials: tpe {one:.2f}x, tpe 1d (each axis on its own) "
                f"{alone:.2f}x, {par} {many:.2f}x")
        if budget in GATED_BUDGETS:
            passed = one < RATIO_TARGET
            ok &= passed
            line += f"  {'PASS' if passed else 'MISS'}"
        print(line)
    if not set(GATED_BUDGETS) & set(budgets):
        print(f"  (no budget of {GATED_BUDGETS} was run: search quality not judged)")

    print()
    print(f"time per proposal, {len(OBJECTIVES['mixed'].axes)} axes, median of "
          f"{TIMED_REPEATS} (target under {PROPOSE_TARGET_MS:.0f} ms):")
    for ended in TIMED_AT:
        tpe_ms, random_ms = time_proposals(ended)
        line = (f"  {ended:>4} ended trials: propose {tpe_ms:6.2f} ms, draw_random "
                f"{random_ms:6.3f} ms ({ratio(tpe_ms, random_ms):.0f}x)")
        passed = tpe_ms < PROPOSE_TARGET_MS
        ok &= passed
        print(line + f"  {'PASS' if passed else 'MISS'}")

    print()
    print(f"searches took {searched_s:.1f} s on {args.jobs} processes")
    print("PASS" if ok else "MISS")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
