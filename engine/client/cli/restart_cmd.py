"""``traintop restart RUN``: a new run doing what RUN did, from the start.

Made on the client from two requests the daemon already answers: ``get_run``
for what RUN was, and ``start`` (or ``run_command`` for a wrapped command) for
the new run, which the daemon checks in full before it creates anything.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from engine.client.cli.common import (
    UsageError,
    chosen_env,
    connect,
    describe,
    divergence_params,
    fault_params,
    queue_params,
    report_new,
    say_new_queue,
    wait_training,
)
from engine.client.client import Client
from engine.common.checkpoint_every import CheckpointEvery
from engine.common.experiment import config_overrides
from engine.common.format import shown
from engine.common.runs import DEFAULT_DIVERGENCE_FACTOR, name_from, unique_name

_RESTART_SUFFIX = re.compile(r"-r\d+$")


def restart_name(name: str, taken: set[str]) -> str:
    """``name-r2``, ``name-r3``...: the first free; a restart of ``x-r2`` is ``x-r3``."""
    base = name_from(_RESTART_SUFFIX.sub("", name))
    # The run restarted holds the place of r1: numbering starts at r2 whether or not
    # ``base`` itself is still a run's name.
    return unique_name(base, lambda n: n == base or n in taken, separator="-r")


def cmd_restart(args: argparse.Namespace) -> int:
    with connect() as client:
        run = client.call("get_run", run=args.run)  # an unknown run: one line, exit 1
        say_new_queue(client, args.queue)
        if run["kind"] == "attached":
            print(
                f"traintop: {run['id']} ({shown(run['name'])}) is a script you started "
                "yourself (traintop.init): restart it by running it again",
                file=sys.stderr,
            )
            return 1
        if run["kind"] == "imported":
            print(f"traintop: run {run['id']} was imported from TensorBoard logs: there is "
                  "no command or workload to run again", file=sys.stderr)
            return 1
        name = args.name or restart_name(run["name"], {r["name"] for r in client.all_runs()})
        new = _restart_command(client, run, args, name) if run["kind"] == "wrapped" else (
            _restart_workload(client, run, args, name)
        )
        if not args.no_wait:
            new = wait_training(client, new["id"])
    return report_new(args, new, f"started {describe(new)}, a restart of {run['id']}")


def _restart_workload(
    client: Client, run: dict[str, Any], args: argparse.Namespace, name: str
) -> dict[str, Any]:
    """``start`` with RUN's workload, device and cwd, and its config as overrides.

    RUN's values go first and the user's after, so an override wins; the daemon
    reads them by the rules of ``start`` and refuses a bad one before creating
    anything.
    """
    own = config_overrides(run["config"])
    result: dict[str, Any] = client.call(
        "start",
        workload=run["workload"],
        overrides=own + list(args.overrides),
        name=name,
        restart_of=run["id"],
        device=args.device or run["device"],
        cwd=run["cwd"],
        env=chosen_env(args),
        **_divergence(run, args),
        **_queue(run, args),
        **fault_params(args, _every_text(run), run.get("retries")),
    )
    return result


def _every_text(run: dict[str, Any]) -> str | None:
    """RUN's checkpoint interval as ``--checkpoint-every`` takes it (None: it has none)."""
    every = CheckpointEvery.from_wire(run.get("checkpoint_every"))
    return None if every is None else every.text()


def _queue(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """RUN's queue, priority, GPUs, GPU memory peak and tags, where the user gives none."""
    given = queue_params(args)
    own = {"queue": run.get("queue"), "priority": run.get("priority"),
           "gpus": run.get("gpus"), "gpu_memory": run.get("gpu_peak"),
           "tags": run.get("tags") or None}
    return {k: v if v is not None else own.get(k) for k, v in given.items()}


def _divergence(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The divergence watch of the new run: the one given, else RUN's own (as a fork's)."""
    if args.divergence_pause is not None or args.divergence_factor is not None:
        return divergence_params(args)
    own = run.get("divergence_factor", DEFAULT_DIVERGENCE_FACTOR)
    return {"divergence_pause": False} if own is None else {"divergence_factor": own}


def _restart_command(
    client: Client, run: dict[str, Any], args: argparse.Namespace, name: str
) -> dict[str, Any]:
    """``run_command`` with RUN's command line, loss pattern and working directory."""
    if args.overrides or args.device:
        raise UsageError(
            f"{run['id']} wraps a command: it takes no key=value overrides or --device; "
            "start a changed command with 'traintop run -- CMD'"
        )
    result: dict[str, Any] = client.call(
        "run_command",
        command=run["config"]["command"],
        loss_pattern=run["config"].get("loss_pattern"),
        metric_patterns=run["config"].get("metric_patterns"),
        only_patterns=run["config"].get("only_patterns"),
        logdir=run["config"].get("logdir"),
        name=name,
        restart_of=run["id"],
        cwd=run["cwd"],
        env=chosen_env(args),
        **_divergence(run, args),
        **_queue(run, args),
    )
    return result
