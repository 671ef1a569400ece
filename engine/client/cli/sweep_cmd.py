"""``traintop sweep``, and ``traintop start -f FILE``: many runs from one spec or file.

Everything that can be checked is checked before the first run starts (the
spec, the file, each run's config against the workload's, the names), so a
mistake starts nothing. A start the engine refuses halfway is reported with
what started and what did not.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from engine.client.cli.common import (
    UsageError,
    chosen_env,
    connect,
    divergence_params,
    queue_params,
)
from engine.client.client import EngineError, EngineUnavailable
from engine.client.sweep_plan import base_name, config_problem, plan_sweep
from engine.common.early_stop import StopRule
from engine.common.experiment import Experiment, ExperimentError, load_experiment
from engine.common.format import format_table, json_text, shown
from engine.common.runs import name_problem
from engine.common.sweep import SweepError, expand, parse_tokens


def read_experiment(args: argparse.Namespace) -> Experiment:
    """The file of ``-f`` (an empty experiment without one); UsageError if it is bad.

    With ``-f``, ``start -f exp.toml lr=1e-3`` leaves ``lr=1e-3`` in the workload
    position: it is moved to the overrides.
    """
    if args.file is None:
        return Experiment()
    if args.workload is not None and "=" in args.workload:
        args.overrides.insert(0, args.workload)
        args.workload = None
    try:
        return load_experiment(args.file)
    except ExperimentError as exc:
        raise UsageError(str(exc)) from None


def _plan(args: argparse.Namespace, experiment: Experiment) -> tuple[str, list[list[str]]]:
    """The workload and each run's overrides; command-line values win over the file's."""
    workload = args.workload or experiment.workload
    if workload is None:
        raise UsageError("no workload: name one, or give a file with workload = ... (-f FILE)")
    trials = args.trials if args.trials is not None else experiment.trials
    seed = args.seed if args.seed is not None else (experiment.seed or 0)
    try:
        spec = experiment.spec.replaced_by(parse_tokens(args.overrides))
        return workload, expand(spec, trials, seed, allow_many=args.yes)
    except SweepError as exc:
        raise UsageError(str(exc)) from None


def start_many(args: argparse.Namespace, experiment: Experiment) -> int:
    """Start (or with ``--dry-run`` show) every run of a sweep or experiment file."""
    workload, runs = _plan(args, experiment)
    base = args.name or experiment.name or base_name(workload)
    if name_problem(base):
        raise UsageError(str(name_problem(base)))
    device = args.device or experiment.device
    queue = args.queue or experiment.queue
    rule = stop_rule(args, experiment)
    with connect() as client:
        listed = client.all_runs()
        taken, sweeps = {r["name"] for r in listed}, {r.get("sweep") for r in listed}
        plan = plan_sweep(workload, runs, base, taken.__contains__, sweeps.__contains__)
        found = client.call("workloads", workload=workload, cwd=os.getcwd())
        problem = config_problem(next(iter(found.values())), plan.runs)
        if problem is not None:
            print(f"traintop: {problem}; nothing was started", file=sys.stderr)
            return 1
        if args.dry_run:
            return _show_plan(args, plan.names, plan.runs, rule)
        extra = {**divergence_params(args), **queue_params(args), "queue": queue,
                 "tags": args.tag or experiment.tags}
        if rule is not None:
            extra["early_stop"] = rule.wire()
        started: list[dict[str, Any]] = []
        for request in plan.start_requests(device=device, cwd=os.getcwd(),
                                           env=chosen_env(args), **extra):
            try:
                started.append(client.call("start", **request))
            except (EngineError, EngineUnavailable) as exc:
                _show_started(args, started, plan.runs)
                _say_refused(exc, len(started), plan.names)
                return 1
    _show_started(args, started, plan.runs)
    return 0


def stop_rule(args: argparse.Namespace, experiment: Experiment) -> StopRule | None:
    """The early stopping asked for: the file's ``[early_stop]``, options winning."""
    grace: int | None = getattr(args, "early_stop", None)  # ('start -f' has no options)
    base = experiment.early_stop
    tuning = [getattr(args, name, None) for name in ("eta", "stop_metric", "stop_mode")]
    if grace is None and base is None:
        if any(value is not None for value in tuning):
            raise UsageError("--eta, --stop-metric and --stop-mode go with --early-stop GRACE")
        return None
    eta, metric, mode = tuning
    try:
        base = base or StopRule(grace or 1)
        return StopRule(grace or base.grace, eta or base.eta, metric or base.metric,
                        mode or base.mode)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _varying(runs: list[list[str]]) -> list[str]:
    """The keys whose value text differs between the runs, in spec order."""
    values = [dict(o.partition("=")[::2] for o in overrides) for overrides in runs]
    keys = list(dict.fromkeys(k for v in values for k in v))
    return [k for k in keys if len({v.get(k) for v in values}) > 1] or keys


def _show_plan(
    args: argparse.Namespace, names: list[str], runs: list[list[str]], rule: StopRule | None
) -> int:
    """``--dry-run``: the runs that would start, their names and overrides, and the rule
    that would stop them early."""
    if args.json:
        print(json_text([{"name": n, "overrides": o} for n, o in zip(names, runs, strict=True)]))
        return 0
    keys = _varying(runs)
    rows = []
    for name, overrides in zip(names, runs, strict=True):
        values = dict(o.partition("=")[::2] for o in overrides)
        rows.append([shown(name), *(shown(values.get(k, "")) for k in keys)])
    print(format_table(["NAME", *(k.upper() for k in keys)], rows))
    if rule is not None:
        print(f"early stop: {rule.describe()}")
    print(f"dry run: {len(runs)} run{'s' if len(runs) != 1 else ''} would start; none started")
    return 0


def _show_started(
    args: argparse.Namespace, started: list[dict[str, Any]], runs: list[list[str]]
) -> None:
    """The runs that started: ids and names (as a JSON list with --json)."""
    if args.json:
        print(json_text(started))
        return
    if not started:
        return
    keys = _varying(runs)
    rows = []
    for run, overrides in zip(started, runs, strict=False):
        values = dict(o.partition("=")[::2] for o in overrides)
        rows.append([run["id"], shown(run["name"]), *(shown(values.get(k, "")) for k in keys)])
    print(format_table(["ID", "NAME", *(k.upper() for k in keys)], rows))


def _say_refused(exc: Exception, done: int, names: list[str]) -> None:
    """One line on stderr: which start was refused and which runs were not started."""
    reason = exc.message if isinstance(exc, EngineError) else str(exc)
    left = names[done:]
    so_far = f"{done} started (listed above)" if done else "none started"
    print(
        f"traintop: run {done + 1} of {len(names)} ({shown(left[0])}) was refused: {reason}; "
        f"{so_far}; not started: {', '.join(shown(n) for n in left)}",
        file=sys.stderr,
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    return start_many(args, read_experiment(args))
