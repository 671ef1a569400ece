"""``traintop sweep``, and ``traintop start -f FILE``: many runs from one spec or file.

Everything that can be checked is checked before the first run starts (the
spec, the file, each run's config against the workload's, the names), so a
mistake starts nothing. A start the engine refuses halfway is reported with
what started and what did not.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import sys
from typing import Any

from engine.client.cli.common import (
    UsageError,
    chosen_env,
    connect,
    divergence_params,
    fault_params,
    queue_params,
    say_new_queue,
)
from engine.client.client import Client, EngineError, EngineUnavailable
from engine.client.sweep_plan import (
    base_name,
    config_problem,
    drawn_keys,
    fresh_seed,
    fresh_seed_text,
    plan_among,
)
from engine.common.config import ConfigError, apply_overrides
from engine.common.config_diff import comparable
from engine.common.early_stop import StopRule
from engine.common.experiment import (
    Experiment,
    ExperimentError,
    config_overrides,
    load_experiment,
)
from engine.common.format import format_table, json_text, shown
from engine.common.pbt import NOTHING_TO_PERTURB, PbtRule, SweepRule, axes_of
from engine.common.runs import name_problem
from engine.common.search import SearchRule, first_trials, search_from
from engine.common.settings import value_text
from engine.common.sweep import (
    MAX_SWEEP_RUNS,
    SweepError,
    expand,
    override_values,
    parse_tokens,
    varying_keys,
)


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


def _plan(args: argparse.Namespace, experiment: Experiment,
          search: SearchRule | None, seed: int) -> tuple[str, list[list[str]]]:
    """The workload and each run's overrides (a search: its first trials, drawn at
    random); command-line values win over the file's."""
    workload = args.workload or experiment.workload
    if workload is None:
        raise UsageError("no workload: name one, or give a file with workload = ... (-f FILE)")
    if search is not None:
        return workload, first_trials(dataclasses.replace(search, seed=seed))
    trials = args.trials if args.trials is not None else experiment.trials
    try:
        spec = experiment.spec.replaced_by(parse_tokens(args.overrides))
        return workload, expand(spec, trials, seed, allow_many=args.yes)
    except SweepError as exc:
        raise UsageError(str(exc)) from None


def _drawn_keys(args: argparse.Namespace, experiment: Experiment) -> list[str]:
    """The keys the sweep draws from a range of real numbers (``drawn_keys``)."""
    try:
        return drawn_keys(experiment.spec.replaced_by(parse_tokens(args.overrides)))
    except SweepError:
        return []  # (said by the plan)


def search_rule(args: argparse.Namespace, experiment: Experiment,
                rule: SweepRule | None) -> SearchRule | None:
    """``--search tpe`` (or the file's ``search``): the sweep's axes searched over
    ``--trials`` trials, judged on the rule's metric if it has one; None: no search."""
    method = getattr(args, "search", None) or experiment.search
    startup = getattr(args, "startup", None)
    startup = startup if startup is not None else experiment.startup
    if method is None:
        if startup is not None:
            raise UsageError("--startup goes with --search tpe")
        return None
    if isinstance(rule, PbtRule):
        raise UsageError("a sweep is searched by TPE or made a population by PBT, not both")
    trials = args.trials if args.trials is not None else experiment.trials
    if trials is not None and trials > MAX_SWEEP_RUNS and not args.yes:
        raise UsageError(f"this search makes {trials} runs, over the limit of "
                         f"{MAX_SWEEP_RUNS} (pass --yes to start it anyway)")
    try:
        spec = experiment.spec.replaced_by(parse_tokens(args.overrides))
        return search_from(
            spec, method, trials, startup,
            getattr(args, "stop_metric", None) or (rule.metric if rule else None),
            getattr(args, "stop_mode", None) or (rule.mode if rule else "min"),
            args.seed if args.seed is not None else (experiment.seed or 0),
            args.device or experiment.device)
    except (SweepError, ValueError) as exc:
        raise UsageError(str(exc).removeprefix("search: ")) from None


def start_many(args: argparse.Namespace, experiment: Experiment) -> int:
    """Start (or with ``--dry-run`` show) every run of a sweep or experiment file."""
    like = getattr(args, "like", None)  # ('start -f' has no --like)
    if like and (args.file is not None or args.workload is not None):
        raise UsageError("--like takes the workload and config from the runs named: "
                         "give it no workload or -f file")
    rule = stop_rule(args, experiment)
    search = search_rule(args, experiment, rule)
    if like and search is not None:
        raise UsageError("--search makes its trials from the axes given: not with --like")
    seed = args.seed if args.seed is not None else experiment.seed
    planned = None if like else _plan(args, experiment, search, seed or 0)  # before connecting
    device = args.device or experiment.device
    queue = args.queue or experiment.queue
    cwd = os.getcwd()
    with connect() as client:
        say_new_queue(client, queue)
        listed = client.all_runs()
        keys = _drawn_keys(args, experiment) if planned is not None and seed is None else []
        if keys and planned is not None:
            seed = fresh_seed(lambda s: _plan(args, experiment, search, s)[1], keys,
                              (r["config"] for r in listed if r["workload"] == planned[0]))
            if seed:
                planned = _plan(args, experiment, search, seed)
                if search is not None:
                    search = dataclasses.replace(search, seed=seed)
                print(f"{fresh_seed_text(seed)} (--seed {seed} draws these again)",
                      file=sys.stderr)
        if planned is None:
            alike = like_plan(client, args, listed)
            if isinstance(alike, int):
                return alike
            workload, runs, cwd, base = alike
        else:
            workload, runs = planned
            base = args.name or experiment.name or base_name(workload)
        if name_problem(base):
            raise UsageError(str(name_problem(base)))
        plan = plan_among(workload, runs, base, listed,
                          None if search is None else list(search.axes))
        found = client.call("workloads", workload=workload, cwd=cwd)
        problem = config_problem(next(iter(found.values())), plan.runs)
        if problem is not None:
            print(f"traintop: {problem}; nothing was started", file=sys.stderr)
            return 1
        if args.dry_run:
            return _show_plan(args, plan.names, plan.runs, rule, search)
        extra = {**divergence_params(args), **queue_params(args), "queue": queue,
                 "tags": args.tag or experiment.tags,
                 **fault_params(args, experiment.checkpoint_every, experiment.retries)}
        if rule is not None:
            extra["early_stop"] = rule.wire()
        if search is not None:
            extra["search"] = search.wire()
        started: list[dict[str, Any]] = []
        for request in plan.start_requests(device=device, cwd=cwd,
                                           env=chosen_env(args), **extra):
            try:
                started.append(client.call("start", **request))
            except (EngineError, EngineUnavailable) as exc:
                show_started(args, started, plan.runs)
                _say_refused(exc, len(started), plan.names)
                return 1
    show_started(args, started, plan.runs)
    return 0


def like_plan(
    client: Client, args: argparse.Namespace, listed: list[dict[str, Any]]
) -> tuple[str, list[list[str]], str, str] | int:
    """``--like RUN...``: each run's config crossed with the axes given (more seeds of the
    best settings, say); the workload, its directory and the sweep's name, or an exit
    status once what is wrong is said. A run alike one that exists (the same workload
    and config: a seed already run) or one planned already is left out, and said."""
    refs = (r for value in args.like for r in re.split(r"[,\s]+", value) if r)
    bases = [client.call("get_run", run=ref) for ref in dict.fromkeys(refs)]
    for run in bases:
        if run["kind"] != "train":
            print(f"traintop: {run['id']} ({shown(run['name'])}) is not a workload's run "
                  f"({run['kind']}): --like takes runs started by 'traintop start' or 'sweep'",
                  file=sys.stderr)
            return 1
    kinds = {(r["workload"], r["cwd"]) for r in bases}
    if len(kinds) > 1:
        raise UsageError("the runs named are of different workloads or directories "
                         f"({', '.join(sorted(w for w, _ in kinds))}): a sweep is of one")
    try:
        combos = expand(parse_tokens(args.overrides), args.trials, args.seed or 0,
                        allow_many=args.yes)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    workload, cwd = bases[0]["workload"], bases[0]["cwd"] or os.getcwd()
    seen = {config_key(r["config"]) for r in listed if r["workload"] == workload}
    runs: list[list[str]] = []
    for run in bases:
        own = config_overrides(run["config"])
        for combo in combos:
            try:
                key = config_key(apply_overrides(run["config"], combo, strict=True))
            except ConfigError as exc:
                raise UsageError(f"{run['id']}: {exc}") from None
            if key not in seen:
                seen.add(key)
                runs.append(own + combo)
    skipped = len(bases) * len(combos) - len(runs)
    if skipped:
        print(f"{skipped} of {len(bases) * len(combos)} alike a run that exists or comes "
              "earlier (same workload and config): left out", file=sys.stderr)
    if not runs:
        print("traintop: every run asked for exists already; nothing was started",
              file=sys.stderr)
        return 1
    sweep = {r["sweep"] for r in bases}
    base = args.name or (sweep.pop() if len(sweep) == 1 and None not in sweep else
                         base_name(workload))
    return workload, runs, cwd, base


def config_key(config: dict[str, Any]) -> str:
    """What two configs share when a person would call them the same run."""
    return repr(sorted((k, comparable(v)) for k, v in config.items()))


def stop_rule(args: argparse.Namespace, experiment: Experiment) -> SweepRule | None:
    """What judges the sweep's runs: early stopping (``--early-stop``, the file's
    ``[early_stop]``) or PBT (``--pbt``, ``[pbt]``), options winning over the file."""
    grace: int | None = getattr(args, "early_stop", None)  # ('start -f' has no options)
    interval: int | None = getattr(args, "pbt", None)
    asha = grace is not None or experiment.early_stop is not None
    pbt = interval is not None or experiment.pbt is not None
    if asha and pbt:
        raise UsageError("a sweep is judged by early stopping or by PBT, not both")
    metric, mode = getattr(args, "stop_metric", None), getattr(args, "stop_mode", None)
    if not pbt and any(value is not None for value in _pbt_tuning(args)):
        raise UsageError("--pbt-quantile and --pbt-resample go with --pbt INTERVAL")
    searched = getattr(args, "search", None) or experiment.search
    try:
        if pbt:
            return _pbt_rule(args, experiment, interval, metric, mode)
        eta = getattr(args, "eta", None)
        if not asha:
            if eta is not None or (not searched and (metric or mode) is not None):
                raise UsageError("--eta goes with --early-stop GRACE; --stop-metric and "
                                 "--stop-mode with --early-stop, --pbt or --search")
            return None
        base = experiment.early_stop or StopRule(grace or 1)
        return StopRule(grace or base.grace, eta or base.eta, metric or base.metric,
                        mode or base.mode)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _pbt_tuning(args: argparse.Namespace) -> tuple[float | None, float | None]:
    return getattr(args, "pbt_quantile", None), getattr(args, "pbt_resample", None)


def _pbt_rule(args: argparse.Namespace, experiment: Experiment, interval: int | None,
              metric: str | None, mode: str | None) -> PbtRule:
    """``--pbt``'s rule: its axes are the sweep's (but seeds)."""
    if getattr(args, "eta", None) is not None:
        raise UsageError("--eta goes with --early-stop; PBT's share is --pbt-quantile")
    base = experiment.pbt or PbtRule(interval or 1)
    try:
        spec = experiment.spec.replaced_by(parse_tokens(args.overrides))
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    axes = axes_of(spec)
    if not axes:
        raise UsageError(NOTHING_TO_PERTURB)
    quantile, resample = _pbt_tuning(args)
    return PbtRule(interval or base.interval,
                   base.quantile if quantile is None else quantile,
                   base.resample if resample is None else resample,
                   metric or base.metric, mode or base.mode, axes)


def _varying(runs: list[list[str]]) -> list[str]:
    """The keys whose value text differs between the runs, in spec order (every key when
    none differs: a sweep of one run still shows its values)."""
    values = [override_values(overrides) for overrides in runs]
    return varying_keys(values) or list(dict.fromkeys(k for v in values for k in v))


def _cells(overrides: list[str], keys: list[str]) -> list[str]:
    """The values of ``keys`` in ``overrides`` as a run's name shows them (``6.94e-4``,
    not a drawn value's every digit: ``traintop show`` has those)."""
    values = override_values(overrides)
    return [shown(value_text(values[k])) if k in values else "" for k in keys]


def _show_plan(
    args: argparse.Namespace, names: list[str], runs: list[list[str]], rule: SweepRule | None,
    search: SearchRule | None,
) -> int:
    """``--dry-run``: the runs that would start, their names and overrides, the rule
    that would stop them early, and the search that would make the rest."""
    if args.json:
        print(json_text([{"name": n, "overrides": o} for n, o in zip(names, runs, strict=True)]))
        return 0
    keys = _varying(runs)
    rows = []
    for name, overrides in zip(names, runs, strict=True):
        rows.append([shown(name), *_cells(overrides, keys)])
    print(format_table(["NAME", *(k.upper() for k in keys)], rows))
    if rule is not None:
        print(f"{rule.label}: {rule.describe()}")
    later = ""
    if search is not None:
        print(f"{search.label}: {search.describe()}")
        left = search.trials - len(runs)
        later = f", {left} more as they end" if left else ""
    print(f"dry run: {len(runs)} run{'s' if len(runs) != 1 else ''} would start{later}; "
          "none started")
    return 0


def show_started(
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
        rows.append([run["id"], shown(run["name"]), *_cells(overrides, keys)])
    print(format_table(["ID", "NAME", *(k.upper() for k in keys)], rows))
    sweep = started[0].get("sweep")
    if sweep:  # what to do next with a hundred of them
        name = shlex.quote(sweep)
        print(f"({len(started)} run{'s' if len(started) != 1 else ''} in sweep {shown(sweep)}: "
              f"'traintop ls --sweep {name} --sort best' ranks them, "
              f"'traintop wait --sweep {name}' waits for them)")


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


def _more_trials(args: argparse.Namespace) -> int:
    """``sweep --more NAME --trials N``: N more trials of a searched sweep."""
    from engine.client.cli.parser import build_parser  # (the parser imports this module)

    defaults = vars(build_parser().parse_args(["sweep"]))
    extra = dict.fromkeys(
        "a workload or axes" if k in ("workload", "overrides") else "--" + k.replace("_", "-")
        for k, v in sorted(vars(args).items())
        if k not in _MORE_OPTIONS and k in defaults and v != defaults[k])
    if extra:
        raise UsageError("--more takes only --trials, --startup, --yes and --json, not "
                         + ", ".join(extra))
    if args.trials is None or args.trials < 1:
        raise UsageError("--more needs --trials N: how many more trials, 1 or more")
    if args.trials > MAX_SWEEP_RUNS and not args.yes:
        raise UsageError(f"{args.trials} more trials is over the limit of "
                         f"{MAX_SWEEP_RUNS} (pass --yes to add them anyway)")
    with connect() as client:
        done = client.call("search_more", sweep=args.more, trials=args.trials,
                           startup=args.startup)
    if args.json:
        print(json_text(done))
        return 0
    rule = SearchRule.from_wire(done["search"])
    print(f"sweep {shown(done['sweep'])}: {args.trials} more trials, {rule.trials} in all, "
          f"{rule.startup} at a time; {len(done['started'])} started now")
    if done["started"]:
        print(format_table(["ID", "NAME"], [[r["id"], shown(r["name"])] for r in done["started"]]))
    return 0


# What ``sweep --more`` takes (the rest of sweep's options would be ignored: refused).
_MORE_OPTIONS = {"more", "trials", "startup", "yes", "json", "func"}


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.more is not None:
        return _more_trials(args)
    if args.like and args.workload is not None and "=" in args.workload:
        args.overrides.insert(0, args.workload)  # 'sweep --like A seed=0,1': an axis
        args.workload = None
    return start_many(args, read_experiment(args))
