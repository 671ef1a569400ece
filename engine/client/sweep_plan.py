"""A sweep made ready to start: its runs' overrides, their names, its group name, and the
``start`` request of each run. The CLI (``traintop sweep``, ``start -f``) and the TUI's
sweep dialog both start sweeps with these, so a sweep is expanded and named one way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.common.config import ConfigError, apply_overrides, parse_literal
from engine.common.runs import unique_name
from engine.common.sweep import SweepSpec, expand, override_values, parse_tokens, run_names


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will start: one ``start`` per run, all in one sweep group."""

    workload: str
    runs: list[list[str]]  # each run's ``key=value`` overrides
    names: list[str]  # each run's name: the base and the values that differ
    sweep: str | None  # the group the runs share (None: a single run, no group)

    def start_requests(self, **extra: Any) -> Iterator[dict[str, Any]]:
        """The parameters of each run's ``start`` request, ``extra`` (device, queue,
        cwd...) added to each."""
        for overrides, name in zip(self.runs, self.names, strict=True):
            yield {"workload": self.workload, "overrides": overrides, "name": name,
                   "sweep": self.sweep, **extra}


def base_name(workload: str) -> str:
    """What a sweep's names start with: the workload, or its file's stem."""
    is_file = workload.endswith(".py") or ":" in workload
    return Path(workload.partition(":")[0]).stem if is_file else workload


def plan_sweep(
    workload: str,
    runs: list[list[str]],
    base: str,
    taken_names: Callable[[str], bool],
    taken_sweeps: Callable[[str], bool],
    searched: Sequence[str] | None = None,
) -> SweepPlan:
    """Name the runs ``expand`` made of a spec, and their group.

    Names and the group's name avoid those taken already (a sweep named ``base``
    exists: the group is ``base-2``). A search's first trials (``searched``: its axes)
    are a group even when there is one, named as the daemon names the trials it makes
    later: the group's name and the value of each axis.
    """
    if searched is not None:
        sweep: str | None = unique_name(base, taken_sweeps)
        assert sweep is not None
        return SweepPlan(workload, runs, run_names(sweep, runs, taken_names, searched), sweep)
    names = run_names(base, runs, taken_names)
    sweep = unique_name(base, taken_sweeps) if len(runs) > 1 else None
    return SweepPlan(workload, runs, names, sweep)


def plan_among(workload: str, runs: list[list[str]], base: str,
               listed: Iterable[Mapping[str, Any]],
               searched: Sequence[str] | None = None) -> SweepPlan:
    """``plan_sweep`` beside the runs ``listed`` (as ``list_runs`` gives them): no name
    nor group of theirs is taken again."""
    listed = list(listed)
    taken, sweeps = {r["name"] for r in listed}, {r.get("sweep") for r in listed}
    return plan_sweep(workload, runs, base, taken.__contains__, sweeps.__contains__, searched)


def config_problem(defaults: Mapping[str, Any], runs: Sequence[Sequence[str]]) -> str | None:
    """The first run's overrides the workload (its ``defaults``) would refuse, as one line;
    None if every run's fit. A workload that declares no config takes anything."""
    for overrides in runs:
        try:
            apply_overrides(dict(defaults), list(overrides), strict=bool(defaults))
        except ConfigError as exc:
            return str(exc)
    return None


def fork_variants(overrides: Sequence[str], trials: int | None = None, seed: int = 0,
                  allow_many: bool = False) -> list[list[str]] | None:
    """Each fork's overrides when ``overrides`` ask for several (a list of values, or a
    random axis drawn ``trials`` times), as a sweep expands them; None when they are one
    fork's. SweepError (one line) if they are malformed."""
    spec = parse_tokens(overrides)
    if not (spec.grid or spec.random or trials is not None):
        return None
    return expand(spec, trials, seed, allow_many=allow_many)


# How many seeds a sweep made without one tries for draws no run has had.
SEED_TRIES = 1000


def drawn_keys(spec: SweepSpec) -> list[str]:
    """The keys drawn from a range of real numbers (log() or uniform()): values no two
    draws share by chance, so one a run already has was drawn from the same seed."""
    return [key for key, axis in spec.random.items() if axis.kind in ("log", "uniform")]


def fresh_seed(plan: Callable[[int], list[list[str]]], keys: list[str],
               configs: Iterable[Mapping[str, Any]]) -> int:
    """The first seed from 0 whose draws (``plan(seed)``: each run's overrides) none of
    ``configs`` (the workload's runs) has: a sweep made again without a seed draws new
    values, as Optuna and Ray Tune do; the seed is said, so giving it draws them again."""
    had = {tuple(_number(config.get(k)) for k in keys) for config in configs}
    for seed in range(SEED_TRIES):
        drawn = (override_values(run) for run in plan(seed))
        if not any(tuple(_number(parse_literal(d[k])) for k in keys) in had for d in drawn):
            return seed
    return SEED_TRIES


def fresh_seed_text(seed: int) -> str:
    """Why a sweep draws with ``seed`` (1 or more) rather than 0."""
    before = "seed 0's draws were" if seed == 1 else f"the draws of seeds 0 to {seed - 1} were"
    return f"seed {seed}: {before} run before"


def _number(value: Any) -> Any:
    """A config value as drawn values compare with it (1e-3 and 0.001 alike)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else value
