"""The commands that act on runs: start, run, pause, resume, fork, kill, rm and demo.

Each waits a moment for its effect (a first step, a pause taken, an exit), so
an early failure is said here rather than found later.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from engine.client.cli.common import (
    UsageError,
    ask_each,
    chosen_env,
    connect,
    describe,
    divergence_params,
    ended,
    fail_if_failed,
    fault_params,
    named_runs,
    queue_params,
    report_new,
    say_new_queue,
    starting,
    sweep_runs,
    wait_all_training,
    wait_for_all,
    wait_training,
)
from engine.client.cli.sweep_cmd import read_experiment, show_started, start_many, stop_rule
from engine.client.demo import FORK_AFTER_STEPS, maybe_fork, start_demo
from engine.client.sweep_plan import fork_variants, plan_among
from engine.common.experiment import Experiment
from engine.common.format import format_bytes, shown
from engine.common.pbt import SweepRule
from engine.common.runs import DEFAULT_KILL_GRACE, name_problem
from engine.common.sweep import SweepError, SweepSpec
from engine.common.tb_events import TensorBoardMissing, require_tensorboard


def cmd_start(args: argparse.Namespace) -> int:
    experiment = read_experiment(args)
    if experiment.is_sweep:  # a file with a [sweep]: start it as 'traintop sweep -f' would
        for option in ("trials", "seed", "queue"):
            vars(args).setdefault(option, None)
        vars(args).update(yes=False, dry_run=False)
        # --steps and --text are values for every run, like the file's [config]; they win.
        given = {"steps": args.steps, "text": args.text and os.path.abspath(args.text)}
        fixed = {k: str(v) for k, v in given.items() if v is not None}
        experiment.spec = experiment.spec.replaced_by(SweepSpec(fixed=fixed))
        return start_many(args, experiment)
    workload = args.workload or experiment.workload
    if workload is None:
        raise UsageError("no workload: name one, or give a file with workload = ... (-f FILE)")
    # The file's config first: a later override of the same key wins.
    overrides = [f"{k}={v}" for k, v in experiment.spec.fixed.items()] + list(args.overrides)
    if args.text is not None:
        overrides.append(f"text={os.path.abspath(args.text)}")
    with connect() as client:
        say_new_queue(client, args.queue or experiment.queue)
        run = client.call(
            "start",
            workload=workload,
            overrides=overrides,
            name=args.name or experiment.name,
            device=args.device or experiment.device,
            steps=args.steps,
            cwd=os.getcwd(),
            env=chosen_env(args),
            **divergence_params(args),
            **fault_params(args, experiment.checkpoint_every, experiment.retries),
            **{**queue_params(args), "queue": args.queue or experiment.queue,
               "tags": args.tag or experiment.tags},
        )
        if not args.no_wait:
            run = wait_training(client, run["id"])
    return report_new(args, run, f"{_verb(run)} {describe(run)}")


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("no command given: traintop run [--name N] -- CMD [ARGS...]")
    logdir = None
    if args.logdir is not None:
        try:
            require_tensorboard()
        except TensorBoardMissing as exc:
            raise UsageError(str(exc)) from None
        logdir = str(Path(args.logdir).expanduser().absolute())
    with connect() as client:
        say_new_queue(client, args.queue)
        run = client.call(
            "run_command",
            command=command,
            name=args.name,
            loss_pattern=args.loss_pattern,
            metric_patterns=args.metric,
            only_patterns=args.only_patterns,
            logdir=logdir,
            cwd=os.getcwd(),
            env=chosen_env(args),
            retries=args.retries,
            **divergence_params(args),
            **queue_params(args),
        )
        if not args.no_wait:
            run = wait_training(client, run["id"])  # a first metric, an exit, or 5 s
    line = f"{_verb(run)} {run['id']} ({shown(run['name'])}) {run['state']}: {' '.join(command)}"
    if run["state"] == "queued" and run.get("condition"):
        line += f" ({run['condition']})"
    return report_new(args, run, line)


def _verb(run: dict[str, Any]) -> str:
    """How a new run's report begins: it started, or it waits in its queue."""
    return "queued" if run["state"] == "queued" else "started"


def cmd_pause(args: argparse.Namespace) -> int:
    if args.release:

        def done(r: dict[str, Any]) -> bool:
            return r["released"] or ended(r)
    else:
        done = lambda r: r["state"] not in ("running", "starting")  # noqa: E731
    with connect() as client:
        swept = sweep_runs(client, args.sweep)  # (one listing for both)
        chosen = named_runs(client, args, "pause", lambda run: run["state"] in (
            "running", "starting") or (args.release and run["state"] == "paused"
                                       and not run["released"]), swept=swept)
        queued = [r for r in swept.values() if r["state"] == "queued"]
        taken, status = ask_each(client, chosen, "pause", release=args.release)
        runs = wait_for_all(client, list(taken), done, args.timeout)
    if queued and args.release:  # what a user freeing a GPU for something else must know
        queues = sorted({str(r["queue"]) for r in queued})
        print(f"traintop: {len(queued)} queued run{'s' if len(queued) != 1 else ''} of the "
              f"sweep may take the slots freed ('traintop queue {queues[0]} --pause' holds "
              f"{'them' if len(queues) == 1 else 'those of ' + queues[0]})", file=sys.stderr)
    for run in runs:
        if ended(run):  # (it trained its last step first)
            print(f"not paused: {describe(run)}")
        elif run["state"] in ("running", "starting") or (args.release and not run["released"]):
            print(f"pause of {run['id']} requested; it takes effect at its next step")
        else:
            print(f"paused {describe(run)}" + (" (memory released)" if run["released"] else ""))
    return status


def cmd_resume(args: argparse.Namespace) -> int:
    with connect() as client:
        chosen = named_runs(client, args, "resume",
                            lambda run: run["state"] == "paused")
        taken, status = ask_each(client, chosen, "resume")
        # Settled once running, ended, or queued behind other runs (its condition says why).
        runs = wait_for_all(
            client, list(taken), lambda r: r["state"] != "paused" and not starting(r),
            args.timeout,
        )
    for run in runs:
        since = taken[run["id"]].get("resumed_from")  # a failed run: its last checkpoint
        where = "" if since is None else f" (from its last complete checkpoint, at step {since})"
        print(f"resumed {describe(run)}{where}")
        status = max(status, fail_if_failed(run))
    return status


def cmd_fork(args: argparse.Namespace) -> int:
    try:
        variants = fork_variants(args.overrides, args.trials, args.seed or 0, args.yes)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    rule = stop_rule(args, Experiment())
    if variants is not None:
        return _fork_variants(args, variants, rule)
    if rule is not None:
        raise UsageError("--early-stop and --pbt judge forks made together: give a list of "
                         "values (lr=1e-4,3e-4) or a random axis with --trials")
    with connect() as client:
        say_new_queue(client, args.queue)
        child = client.call(
            "fork",
            run=args.run,
            overrides=list(args.overrides),
            name=args.name,
            device=args.device,
            **divergence_params(args),
            **fault_params(args),
            **queue_params(args),
        )
        if not args.no_wait:
            child = wait_training(client, child["id"])
    where = f" at step {child['fork_step']}" if child["fork_step"] is not None else ""
    done = ""
    if child["state"] == "finished" and child["step"] == child["fork_step"]:
        steps = child["config"].get("steps")
        more = f", e.g. steps={2 * steps}" if type(steps) is int and steps > 0 else ""
        done = f"; it had nothing left to train: give it more steps{more}"
    return report_new(args, child, f"forked {child['parent_id']}{where} -> {describe(child)}{done}")


def _fork_variants(args: argparse.Namespace, variants: list[list[str]],
                   rule: SweepRule | None) -> int:
    """``fork RUN lr=1e-4,3e-4``: one fork per variant, all from one checkpoint of the
    parent, named by their values and grouped as a sweep (named for the parent), judged
    by ``rule`` if given (ASHA's rungs count from the fork step)."""
    if args.name is not None and name_problem(args.name):
        raise UsageError(str(name_problem(args.name)))
    with connect() as client:
        say_new_queue(client, args.queue)
        parent = client.call("get_run", run=args.run)
        plan = plan_among(parent["workload"], variants, args.name or parent["name"],
                          client.all_runs())
        forks = client.call(
            "fork_variants", run=parent["id"], variants=plan.runs, names=plan.names,
            device=args.device, **divergence_params(args), **fault_params(args),
            **{**queue_params(args), "sweep": plan.sweep},
            **({} if rule is None else {"early_stop": rule.wire()}),
        )["runs"]
        if not args.no_wait:
            forks = wait_all_training(client, [f["id"] for f in forks])
    steps = {f["fork_step"] for f in forks} - {None}
    where = f" at step {steps.pop()}" if len(steps) == 1 else ""
    if not args.json:
        group = f" (group {shown(plan.sweep)})" if plan.sweep else ""
        print(f"forked {parent['id']} ({shown(parent['name'])}){where} into {len(forks)} "
              f"run{'s' if len(forks) != 1 else ''}{group}")
    show_started(args, forks, plan.runs)
    return max(fail_if_failed(f) for f in forks)


def cmd_kill(args: argparse.Namespace) -> int:
    with connect() as client:
        chosen = named_runs(client, args, "kill", lambda run: not ended(run))
        taken, status = ask_each(client, chosen, "kill", grace=args.grace)
        # A search makes a trial as one of its runs ends by itself meanwhile: it goes too.
        while args.sweep and (made := [r for r, run in sweep_runs(client, args.sweep, taken)
                                       .items() if not ended(run)]):
            more, failed = ask_each(client, made, "kill", grace=args.grace)
            status = max(status, failed)
            if not more:
                break
            taken.update(more)
        # a wrapped command: SIGINT, SIGTERM, then SIGKILL
        runs = wait_for_all(client, list(taken), ended, 2 * args.grace + 10)
        # Signals need no store: under another process's lock they went out unrecorded.
        problem = client.call("status").get("store_problem") if not all(
            ended(run) for run in runs) else None
    for run in runs:
        if run["state"] == "killed":
            print(f"killed {run['id']} ({shown(run['name'])})")
        elif problem and not ended(run):
            print(f"sent {run['id']} ({shown(run['name'])}) its kill; not recorded yet: "
                  f"{problem}")
        else:
            print(f"{run['id']} is {run['state']}")
    return status


def cmd_rm(args: argparse.Namespace) -> int:
    verb = "would remove" if args.dry_run else "removed"
    with connect() as client:
        swept = sweep_runs(client, args.sweep)  # (one listing for both)
        resolved = named_runs(client, args, "rm", lambda run: args.force or ended(run),
                              "remove", swept)
        run_ids = list(resolved)
        left = 0 if args.force else sum(not ended(run) for run in swept.values())
        if left:  # said once, not once a run
            print(f"traintop: {left} run{'s' if left != 1 else ''} of sweep "
                  f"{shown(', '.join(args.sweep))} not ended, not removed: kill them first, "
                  "or give -f", file=sys.stderr)
        if args.force:  # kill what has not ended, wait for it, then remove it with the rest
            live = [r for r, run in resolved.items() if not ended(run)]
            if args.dry_run:
                run_ids = [r for r in run_ids if r not in live]
                for run_id in live:
                    print(f"would kill {run_id}, then remove it")
            else:
                killed, _ = ask_each(client, live, "kill", grace=DEFAULT_KILL_GRACE)
                wait_for_all(client, list(killed), ended, 2 * DEFAULT_KILL_GRACE + 10)
        taken, status = ask_each(client, run_ids, "remove", dry_run=args.dry_run,
                                 checkpoints=args.checkpoints)
        status = max(status, int(left > 0))
    if args.checkpoints:
        _say_checkpoints_removed(taken, args.dry_run)
        return status
    for run in taken.values():
        print(f"{verb} {run['id']} ({shown(run['name'])}, {run['state']}): "
              f"{format_bytes(run['freed'])} of files")
    if len(taken) > 1:
        freed = format_bytes(sum(run["freed"] for run in taken.values()))
        print(f"{len(taken)} runs would free {freed}" if args.dry_run
              else f"removed {len(taken)} runs: {freed} freed")
    return status


def _say_checkpoints_removed(taken: dict[str, dict[str, Any]], dry_run: bool) -> None:
    """A line for each run whose checkpoints went (or would), and the total."""
    verb = "would remove" if dry_run else "removed"
    for run in taken.values():
        which = f"{run['id']} ({shown(run['name'])}, {run['state']})"
        kept = "; ".join(f"kept {k['file']}: fork {k['run']} goes on from it" for k in run["kept"])
        if not run["freed"] and not kept:
            print(f"{which} has no checkpoint to remove")
            continue
        freed = f"{format_bytes(run['freed'])}{'' if dry_run else ' freed'}"
        print(f"{verb} the checkpoints of {which}: {freed}" + (f"; {kept}" if kept else ""))
    if len(taken) > 1:
        freed = format_bytes(sum(run["freed"] for run in taken.values()))
        print(f"the checkpoints of {len(taken)} runs would free {freed}" if dry_run
              else f"removed the checkpoints of {len(taken)} runs: {freed} freed")


def cmd_demo(args: argparse.Namespace) -> int:
    with connect() as client:
        runs = start_demo(client)
        fork = maybe_fork(client)
    print(
        f"demo: {len(runs)} charlm runs; a fork follows at step {FORK_AFTER_STEPS}"
        + (f" (forked {fork['id']})" if fork else "")
    )
    print("watch them with: traintop")
    return 0

