"""What the ``traintop`` commands share: connecting, waiting on a run, saying how it went."""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from engine.client.client import Client, EngineError
from engine.client.queue_text import new_queue_text
from engine.common.format import json_text, shown
from engine.common.run_env import run_env
from engine.common.runs import RunState, exit_text, name_problem, tag_problem

ACTIVE_WAIT = ("queued", "starting")
# How long start and fork wait for a running run's first step, to catch early failures.
FIRST_STEP_WAIT = 5.0
# Runs waited on beyond which a poll reads them from one listing of every run, rather
# than asking for each in full (its events, forks, lineage): 500 forks of one
# checkpoint would otherwise be 5,000 requests a second to the daemon.
POLL_EACH_MAX = 8


class UsageError(Exception):
    """A malformed command line."""



def connect(autostart: bool = True) -> Client:
    """A client of this user's engine, started first if none runs (and ``autostart``)."""
    return Client().connect(autostart=autostart)


def terminal_width() -> int | None:
    """The width to fit a table to: the terminal's, or $COLUMNS if set; None for a pipe
    or a file (a script reads every character)."""
    if "COLUMNS" in os.environ or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def wait_for(
    client: Client, run_id: str, done: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """Poll a run until ``done(run)`` or ``timeout`` seconds; returns the last view."""
    return wait_for_all(client, [run_id], done, timeout)[0]


def wait_for_all(
    client: Client, run_ids: list[str], done: Callable[[dict[str, Any]], bool], timeout: float
) -> list[dict[str, Any]]:
    """Poll runs until ``done`` holds for each, or ``timeout`` seconds; their last views
    (each in full, as ``get_run`` gives it), in the order given. Only the runs not done
    yet are asked for again."""
    deadline = time.monotonic() + timeout
    runs = _polled(client, run_ids)
    while pending := [r for r, run in runs.items() if not done(run)]:
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
        runs.update(_polled(client, pending))
    if len(run_ids) > POLL_EACH_MAX:  # polled as listed: now each in full, once
        runs = {r: client.call("get_run", run=r) for r in run_ids}
    return list(runs.values())


def _polled(client: Client, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each run by id: in full if there are few, else as listed (one not listed, as a
    removed run: asked for, which raises as it would have)."""
    listed = (
        {run["id"]: run for run in client.all_runs()} if len(run_ids) > POLL_EACH_MAX else {}
    )
    return {r: listed.get(r) or client.call("get_run", run=r) for r in run_ids}


def resolve_runs(client: Client, refs: list[str]) -> dict[str, dict[str, Any]]:
    """Each run named (by id, prefix or name), once, in the order given; EngineError for
    the first one that names no run, before anything is done to any."""
    runs: dict[str, dict[str, Any]] = {}
    for ref in refs:
        run = client.call("get_run", run=ref)
        runs.setdefault(run["id"], run)
    return runs


def no_sweep_text(name: str, sweeps: Iterable[str]) -> str:
    """What to say of a sweep name no run has: the closest one, if any is close."""
    known = sorted(set(sweeps))
    near = difflib.get_close_matches(name, known, n=1)
    hint = (f"did you mean {near[0]!r}?" if near else "'traintop ls --sweeps' lists them"
            if known else "there are no sweeps yet")
    return f"no sweep named {shown(name)} ({hint})"


def sweep_runs(client: Client, sweeps: Iterable[str],
               known: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """The runs of ``sweeps`` not among ``known``, as listed; EngineError for a sweep no
    run belongs to (only with ``known`` empty: at the start, not for a later look)."""
    names, seen = set(sweeps), set(known)
    if not names:
        return {}
    listed = client.all_runs()
    have = {run["sweep"] for run in listed if run.get("sweep")}
    unknown = sorted(names - have) if not seen else []
    if unknown:
        raise EngineError("unknown_sweep", no_sweep_text(unknown[0], have))
    return {run["id"]: run for run in listed
            if run.get("sweep") in names and run["id"] not in seen}


def named_runs(client: Client, args: argparse.Namespace, command: str,
               of_sweep: Callable[[dict[str, Any]], bool], verb: str | None = None,
               swept: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The runs named, and those of ``--sweep`` (``swept``: as ``sweep_runs`` listed them
    already) for which ``of_sweep`` holds; all checked before anything is done (an unknown
    one refuses them all)."""
    if not args.runs and not args.sweep:
        raise UsageError(f"{command} needs runs or --sweep NAME: traintop {command} RUN... | "
                         f"--sweep NAME (traintop {command} --help)")
    runs = resolve_runs(client, args.runs)
    for run_id, run in (sweep_runs(client, args.sweep) if swept is None else swept).items():
        if of_sweep(run):
            runs.setdefault(run_id, run)
    if not runs:
        print(f"no run of sweep {shown(', '.join(args.sweep))} is left to {verb or command}")
    return runs


def ask_each(
    client: Client, run_ids: Iterable[str], method: str, **params: Any
) -> tuple[dict[str, dict[str, Any]], int]:
    """Ask ``method`` of each run (ids ``resolve_runs`` gave, so a typo among the names
    refused them all before): the replies of the runs that took it, by id, and 1 if one
    refused (said on stderr; the others are still asked), else 0."""
    replies, status = {}, 0
    for run_id in run_ids:
        try:
            replies[run_id] = client.call(method, run=run_id, **params)
        except EngineError as exc:  # which of the runs asked, unless the message says it
            said = exc.message if run_id in exc.message else f"{run_id}: {exc.message}"
            print(f"traintop: {said}", file=sys.stderr)
            status = 1
    return replies, status


def wait_training(client: Client, run_id: str) -> dict[str, Any]:
    """Wait until a new run has taken a step (or ended, or a few seconds passed).

    Seeing ``running`` is not enough: a workload that raises in its first step
    is reported as a failure, not as started.
    """
    return wait_all_training(client, [run_id])[0]


def wait_all_training(client: Client, run_ids: list[str]) -> list[dict[str, Any]]:
    """``wait_training`` for runs started together (forks of one checkpoint), waited
    for together: however many there are, at most as long as for one."""
    runs = wait_for_all(client, run_ids, lambda r: not starting(r), 60)
    first = {r["id"]: r["step"] for r in runs if r["state"] == "running"}
    if first:
        stepped = wait_for_all(
            client,
            list(first),
            lambda r: r["state"] != "running" or r["step"] > first[r["id"]],
            FIRST_STEP_WAIT,
        )
        now = {r["id"]: r for r in stepped}
        runs = [now.get(r["id"], r) for r in runs]
    return runs


def starting(run: dict[str, Any]) -> bool:
    """Is the run on its way to running? Not a queued run that waits its turn (the
    daemon says why: its condition); a fork that waits for its parent's checkpoint is."""
    if run["state"] == "queued":
        return run.get("awaiting") is not None or not run.get("condition")
    return run["state"] in ACTIVE_WAIT


def report_new(args: argparse.Namespace, run: dict[str, Any], line: str) -> int:
    """Print a run just started (as JSON with --json, else ``line``); 1 if it failed."""
    print(json_text(run) if args.json else line)
    return fail_if_failed(run)


def fail_if_failed(run: dict[str, Any]) -> int:
    """Say on stderr why a failed run failed, and return 1; 0 for any other state."""
    if run["state"] == "failed":
        print(
            f"traintop: run {run['id']} ({shown(run['name'])}) failed: "
            f"{exit_text(run['exit_reason'], run.get('exit_code'))} "
            f"(see 'traintop logs {run['id']} --stderr')",
            file=sys.stderr,
        )
        return 1
    return 0


def ended(run: dict[str, Any]) -> bool:
    """Has the run reached a terminal state?"""
    return RunState(run["state"]).terminal


def describe(run: dict[str, Any]) -> str:
    """One line for a run: id, name, state, step and device."""
    if run["state"] == "queued" and run.get("condition"):
        return f"{run['id']} ({shown(run['name'])}) queued in {run['queue']}: {run['condition']}"
    step = f"step {run['step']}" + (f"/{run['total_steps']}" if run["total_steps"] else "")
    line = f"{run['id']} ({shown(run['name'])}) {run['state']} at {step} on {run['device']}"
    return line + (f" ({run['stopped_early']})" if run.get("stopped_early") else "")


_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """``20G``, ``512MiB``, ``1.5g`` or plain bytes, in bytes (binary units); UsageError else."""
    number = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = number[-1:] if number[-1:] in _SIZE_UNITS else ""
    try:
        value = float(number[: len(number) - len(unit)])
    except ValueError:
        raise UsageError(f"not a size: {text!r} (say e.g. 20G or 512M)") from None
    if not 0 <= value < 2**63 / _SIZE_UNITS[unit]:
        raise UsageError(f"not a size: {text!r} (say e.g. 20G or 512M)")
    return int(value * _SIZE_UNITS[unit])


def say_new_queue(client: Client, name: str | None) -> None:
    """One line on stderr if ``name`` is a queue nothing has made or used yet (one that
    cannot be a queue's name is left to the engine to refuse)."""
    if name and name_problem(name) is None:
        said = new_queue_text(name, client.call("queues", waiting=0))
        if said is not None:
            print(f"traintop: queue {name!r} is new: {said}", file=sys.stderr)


def queue_params(args: argparse.Namespace) -> dict[str, Any]:
    """A new run's place in a queue, the resources it asks for and its tags, as given
    (None: default)."""
    if args.gpus is not None and args.gpu_share is not None:
        raise UsageError("give --gpus or --gpu-share, not both")
    if args.gpus is not None and args.gpus < 0:
        raise UsageError("--gpus must be 0 or more")
    if args.gpu_share is not None and not 0 < args.gpu_share <= 1:
        raise UsageError("--gpu-share must be above 0 and at most 1")
    for tag in args.tag or []:  # said before a sweep starts any of its runs
        if (problem := tag_problem(tag)) is not None:
            raise UsageError(problem)
    return {
        "queue": args.queue,
        "priority": args.priority,
        "after": args.after,
        "gpus": args.gpus if args.gpu_share is None else args.gpu_share,
        "gpu_memory": None if args.gpu_mem is None else parse_size(args.gpu_mem),
        "tags": args.tag,
    }


def chosen_env(args: argparse.Namespace) -> dict[str, str]:
    """What of this shell's environment the new run gets (written to its launch.json)."""
    return run_env(os.environ, args.env, args.env_all)


def fault_params(args: argparse.Namespace, checkpoint_every: str | None = None,
                 retries: int | None = None) -> dict[str, Any]:
    """A new run's checkpoint interval and retries: the options, else the defaults given
    (an experiment file's, a restarted run's); None is left to the daemon."""
    given = args.checkpoint_every
    return {"checkpoint_every": checkpoint_every if given is None else given,
            "retries": retries if args.retries is None else args.retries}


def divergence_params(args: argparse.Namespace) -> dict[str, Any]:
    """The divergence watch a new run asks for (nothing given: the daemon's default)."""
    return {
        "divergence_pause": args.divergence_pause,
        "divergence_factor": args.divergence_factor,
    }
