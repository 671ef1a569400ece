"""``traintop import DIR``: TensorBoard logs as traintop runs (see ``engine.client.tb_import``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.client.cli.common import UsageError, connect
from engine.client.client import Client, EngineError
from engine.client.tb_import import run_name, write_import
from engine.common.format import shown
from engine.common.tb_events import TensorBoardMissing, require_tensorboard, run_dirs

# How long to wait for the daemon to take in the runs written (it looks every 2 s).
IMPORT_WAIT_S = 120.0


def cmd_import(args: argparse.Namespace) -> int:
    root = Path(args.dir).expanduser().absolute()
    if not root.is_dir():
        raise UsageError(f"no such directory: {args.dir}")
    try:
        require_tensorboard()
    except TensorBoardMissing as exc:
        raise UsageError(str(exc)) from None
    sources = run_dirs(root)
    if not sources:
        raise UsageError(f"no TensorBoard event files under {root}")
    made: list[tuple[str, str, int]] = []
    unreadable = 0
    with connect() as client:
        # A directory imported before is not imported again: its runs are already here.
        known = {r["config"].get("logdir"): r["id"] for r in client.all_runs()
                 if r.get("kind") == "imported"}
        for source in sources:
            if str(source) in known:
                print(f"{source}: already imported as run {known[str(source)]}")
                continue
            try:  # the events are read before anything is written: a bad file leaves nothing
                run_id, count = write_import(client.paths, source, run_name(source, root))
            except Exception as exc:  # a damaged event file: the others are still imported
                print(f"traintop: cannot read the event files in {source}: {exc}",
                      file=sys.stderr)
                unreadable += 1
                continue
            made.append((run_id, str(source), count))
        runs = [_landed(client, run_id, args.no_wait) for run_id, _, _ in made]
    if args.json:
        print(json.dumps([{**run, "points": count, "source": source}
                          for run, (_, source, count) in zip(runs, made, strict=True)]))
        return 1 if unreadable else 0
    for run, (_, origin, count) in zip(runs, made, strict=True):
        print(f"imported {run['id']} ({shown(run.get('name') or '')}) {run.get('state', '')}: "
              f"{count} point{'s' if count != 1 else ''} from {origin}")
    return 1 if unreadable else 0


def _landed(client: Client, run_id: str, no_wait: bool) -> dict[str, Any]:
    """The run once the daemon has taken it in and read all its points (or as it is)."""
    deadline = time.monotonic() + IMPORT_WAIT_S
    while not no_wait and time.monotonic() < deadline:
        try:
            run: dict[str, Any] = client.call("get_run", run=run_id)
        except EngineError as exc:  # not taken in yet: the daemon looks every 2 s
            if exc.code != "not_found":
                raise
        else:
            if run["state"] == "finished":
                return run
        time.sleep(0.2)
    return {"id": run_id}
