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
from pathlib import Path
from typing import Any

from engine.client.cli.common import (
    UsageError,
    chosen_env,
    connect,
    divergence_params,
    queue_params,
)
from engine.client.client import Client, EngineError, EngineUnavailable
from engine.common.config import ConfigError, apply_overrides
from engine.common.experiment import Experiment, ExperimentError, load_experiment
from engine.common.format import format_table, json_text, shown
from engine.common.runs import name_problem, unique_name
from engine.common.sweep import SweepError, expand, parse_tokens, run_names


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


def _base_name(workload: str) -> str:
    """What a sweep's names start with: the workload, or its file's stem."""
    is_file = workload.endswith(".py") or ":" in workload
    return Path(workload.partition(":")[0]).stem if is_file else workload


def _plan(args: argparse.Namespace, experiment: Experiment) -> tuple[str, list[list[str]], int]:
    """The workload, each run's overrides and the seed; command-line values win."""
    workload = args.workload or experiment.workload
    if workload is None:
        raise UsageError("no workload: name one, or give a file with workload = ... (-f FILE)")
    trials = args.trials if args.trials is not None else experiment.trials
    seed = args.seed if args.seed is not None else (experiment.seed or 0)
    try:
        spec = experiment.spec.replaced_by(parse_tokens(args.overrides))
        return workload, expand(spec, trials, seed, allow_many=args.yes), seed
    except SweepError as exc:
        raise UsageError(str(exc)) from None


def _check_configs(client: Client, workload: str, runs: list[list[str]]) -> str | None:
    """The first run's config the workload would refuse, as one line; None if all fit."""
    defaults = client.call("workloads", workload=workload, cwd=os.getcwd())
    known = next(iter(defaults.values()))
    for overrides in runs:
        try:
            apply_overrides(known, overrides, strict=bool(known))
        except ConfigError as exc:
            return str(exc)
    return None


def start_many(args: argparse.Namespace, experiment: Experiment) -> int:
    """Start (or with ``--dry-run`` show) every run of a sweep or experiment file."""
    workload, runs, _seed = _plan(args, experiment)
    base = args.name or experiment.name or _base_name(workload)
    if name_problem(base):
        raise UsageError(str(name_problem(base)))
    device = args.device or experiment.device
    queue = args.queue or experiment.queue
    with connect() as client:
        taken = {run["name"] for run in client.all_runs()}
        names = run_names(base, runs, taken.__contains__)
        problem = _check_configs(client, workload, runs)
        if problem is not None:
            print(f"traintop: {problem}; nothing was started", file=sys.stderr)
            return 1
        if args.dry_run:
            return _show_plan(args, names, runs)
        sweeps = {run.get("sweep") for run in client.all_runs()}
        extra = {
            **divergence_params(args), **queue_params(args), "queue": queue,
            "sweep": unique_name(base, sweeps.__contains__) if len(runs) > 1 else None,
        }
        started: list[dict[str, Any]] = []
        for overrides, name in zip(runs, names, strict=True):
            try:
                started.append(
                    client.call(
                        "start", workload=workload, overrides=overrides, name=name,
                        device=device, cwd=os.getcwd(), env=chosen_env(args), **extra,
                    )
                )
            except (EngineError, EngineUnavailable) as exc:
                _show_started(args, started, runs)
                _say_refused(exc, len(started), names)
                return 1
    _show_started(args, started, runs)
    return 0


def _varying(runs: list[list[str]]) -> list[str]:
    """The keys whose value text differs between the runs, in spec order."""
    values = [dict(o.partition("=")[::2] for o in overrides) for overrides in runs]
    keys = list(dict.fromkeys(k for v in values for k in v))
    return [k for k in keys if len({v.get(k) for v in values}) > 1] or keys


def _show_plan(args: argparse.Namespace, names: list[str], runs: list[list[str]]) -> int:
    """``--dry-run``: the runs that would start, their names and overrides."""
    if args.json:
        print(json_text([{"name": n, "overrides": o} for n, o in zip(names, runs, strict=True)]))
        return 0
    keys = _varying(runs)
    rows = []
    for name, overrides in zip(names, runs, strict=True):
        values = dict(o.partition("=")[::2] for o in overrides)
        rows.append([shown(name), *(shown(values.get(k, "")) for k in keys)])
    print(format_table(["NAME", *(k.upper() for k in keys)], rows))
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
