"""``traintop diff`` and ``traintop wait``: commands about several runs at once."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from engine.client.cli.common import (
    UsageError,
    connect,
    describe,
    named_runs,
    resolve_runs,
    sweep_runs,
    terminal_width,
)
from engine.client.client import EngineError
from engine.common.config_diff import UNSET, diff_table, outcome_rows, runs_diff
from engine.common.format import fit_columns, format_table, json_text, shown
from engine.common.runs import RunState

# How often wait looks at the runs itself, besides the events the engine pushes
# (a subscriber too slow to read may be dropped; this keeps wait honest then).
WAIT_POLL_S = 1.0
# Exit statuses of wait: every run finished; one failed, was killed or paused; time out.
WAIT_ALL_FINISHED, WAIT_SOME_DID_NOT_FINISH, WAIT_TIMED_OUT = 0, 1, 2
_STOPPED = {s.value for s in RunState if s.terminal} | {RunState.PAUSED.value}


def cmd_diff(args: argparse.Namespace) -> int:
    with connect() as client:
        named = named_runs(client, args, "diff", lambda run: True)
        if len(named) < 2:
            raise UsageError("diff needs two runs or more: traintop diff A B [C...] | "
                             "--sweep NAME")
        # A sweep's runs come as listed, without their best: asked for in full (with their
        # events); a run named was already.
        runs = [run if "events" in run else client.call("get_run", run=run_id)
                for run_id, run in named.items()]
    diff = runs_diff(runs)
    if args.json:
        def by_run(rows: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
            return {k: {r["id"]: v for r, v in zip(runs, vs, strict=True) if v is not UNSET}
                    for k, vs in rows.items()}
        print(json_text({"runs": [r["id"] for r in runs], "differences": by_run(diff),
                         "outcomes": by_run(outcome_rows(runs))}))
        return 0
    if not diff:
        print("no config differences")
    header, rows = diff_table(runs, diff)
    width = terminal_width()
    if width is not None:  # each run's column (or each value's) gives way alike
        first = max(len(row[0]) for row in (header, *rows))
        share = max(12, (width - first) // max(len(header) - 1, 1) - 2)
        header, *rows = fit_columns(header, rows, width,
                                    [(i, share, True) for i in range(1, len(header))])
    print(format_table(header, rows))
    return 0


def _stopped(run: dict[str, Any]) -> bool:
    """Whether a run will not go on by itself: ended, or paused (by itself or by someone)."""
    return run.get("state") in _STOPPED


def cmd_wait(args: argparse.Namespace) -> int:
    """Block until every run has ended or paused; say how each ended as it does. With
    ``--sweep``, every run of the sweep, also those that join it meanwhile (a PBT round's
    forks take the place of the runs they replace)."""
    if not args.runs and not args.sweep:
        raise UsageError("wait needs runs or --sweep NAME: traintop wait RUN... | --sweep NAME")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    sweeps = set(args.sweep)
    with connect() as client:
        try:
            runs = resolve_runs(client, args.runs)
            runs.update(sweep_runs(client, sweeps))
        except EngineError as exc:
            print(f"traintop: {exc.message}", file=sys.stderr)
            return WAIT_TIMED_OUT
        # Every run's events with a sweep: a run that joins it is one no id could name.
        client.subscribe(["runs"], runs=None if sweeps else list(runs))
        # Looked at again after subscribing, so no change falls between a look and the events.
        changed, seen = set(runs), set(runs)
        ends: list[dict[str, Any]] = []
        held: set[str] = set()  # the held queues said to be so
        while True:
            for run_id in changed & set(runs):
                run = client.call("get_run", run=run_id)
                if _stopped(run):
                    print(describe(run), flush=True)
                    ends.append(run)
                    del runs[run_id]
                elif _held(run) and run["queue"] not in held:
                    held.add(run["queue"])
                    print(f"traintop: waiting on runs queued in {shown(run['queue'])}, which "
                          f"is paused: 'traintop queue {shown(run['queue'])} --resume' lets "
                          "them start", file=sys.stderr, flush=True)
            if not runs:
                joined = sweep_runs(client, sweeps, seen)  # one more look before it is done
                if not joined:
                    break
                runs.update(joined)
                changed, seen = set(joined), seen | set(joined)
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                still = ", ".join(f"{r['id']} ({shown(r['name'])})" for r in runs.values())
                print(
                    f"traintop: timed out after {args.timeout:g} s; still going: {still}",
                    file=sys.stderr,
                )
                return WAIT_TIMED_OUT
            event = client.next_event(WAIT_POLL_S if left is None else min(left, WAIT_POLL_S))
            data = {} if event is None or event.get("event") != "runs" else event["data"]
            if event is None:  # quiet for a while: look at every run left, and for new ones
                joined = sweep_runs(client, sweeps, seen)
                runs.update(joined)
                seen |= set(joined)
                changed = set(runs)
            elif data.get("sweep") in sweeps and data.get("id") not in seen:
                runs[data["id"]], changed = data, {data["id"]}
                seen.add(data["id"])
            elif _stopped(data):
                changed = {str(data.get("id"))}
            else:
                changed = set()
    # A run its sweep's rule stopped early ended as the sweep meant it to.
    missed = [run for run in ends
              if run["state"] != RunState.FINISHED and not run.get("stopped_early")]
    if not missed:
        return WAIT_ALL_FINISHED
    print(f"traintop: {len(missed)} of {len(ends)} runs did not finish: {_tally(missed)}",
          file=sys.stderr)
    return WAIT_SOME_DID_NOT_FINISH


def _held(run: dict[str, Any]) -> bool:
    """Whether a run waits in a queue someone (or a failure) paused."""
    return run.get("state") == RunState.QUEUED and str(run.get("condition") or "").startswith(
        f"queue {run.get('queue')} is paused")


def _tally(runs: list[dict[str, Any]], ids_shown: int = 5) -> str:
    """'2 killed (ab12cd, ef34gh), 1 failed (ij56kl)': the runs by state, a few ids each."""
    by_state: dict[str, list[str]] = {}
    for run in runs:
        by_state.setdefault(str(run["state"]), []).append(str(run["id"]))
    parts = []
    for state, ids in by_state.items():
        more = f", {len(ids) - ids_shown} more" if len(ids) > ids_shown else ""
        parts.append(f"{len(ids)} {state} ({', '.join(ids[:ids_shown])}{more})")
    return ", ".join(parts)
