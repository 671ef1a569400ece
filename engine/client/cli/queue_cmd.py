"""``traintop queue`` and ``traintop move``: the queues, what waits in each, and its order."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

from engine.client.cli.common import UsageError, connect, say_new_queue
from engine.client.queue_text import (
    QUEUE_HEADER,
    new_queue_text,
    queue_row,
    waiting_count,
    waiting_lines,
)
from engine.common.format import format_table, json_text, shown


def cmd_queue(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.parallel is not None:
        if args.parallel < 0:
            raise UsageError("--parallel must be 0 (no limit) or more")
        changes["parallel"] = args.parallel
    if args.pause or args.resume:
        changes["paused"] = bool(args.pause)
    if args.pause_on_failure is not None:
        changes["pause_on_failure"] = args.pause_on_failure
    if changes and args.name is None:
        raise UsageError("name the queue to change: traintop queue NAME --parallel N")
    with connect() as client:
        if changes:
            if "parallel" not in changes:  # 'queue nigth --pause' makes a queue: say so
                say_new_queue(client, args.name)
            else:  # made on purpose; but one a letter away from a known queue is said
                known = [str(q["name"]) for q in client.call("queues", waiting=0)]
                near = difflib.get_close_matches(args.name, known, n=1)
                if args.name not in known and near:
                    print(f"traintop: made queue {args.name!r}; did you mean {near[0]!r}?",
                          file=sys.stderr)
            queues = [client.call("queue_set", name=args.name, **changes)]
        else:
            queues = client.call("queues", waiting=args.limit)
            if args.name is not None:
                unknown = new_queue_text(args.name, queues)
                if unknown is not None:  # nothing made or used it: say so, list nothing
                    print(f"traintop: no queue named {args.name!r} yet; a run sent there "
                          f"makes it, and {unknown}", file=sys.stderr)
                    return 1
                queues = [q for q in queues if q["name"] == args.name]
    if args.json:
        print(json_text(queues if args.name is None else queues[0]))
        return 0
    print(format_table(QUEUE_HEADER, [queue_row(q) for q in queues]))
    for queue in queues:
        if waiting_count(queue):
            print(f"\nwaiting in {shown(queue['name'])}, in the order they start:")
            print("\n".join(waiting_lines(queue)))
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    with connect() as client:
        run = client.call("move", run=args.run, to=args.to)
        line = [w["id"] for q in client.call("queues") if q["name"] == run["queue"]
                for w in q["waiting"]]
    place = line.index(run["id"]) + 1 if run["id"] in line else "?"
    where = args.to if args.to in ("up", "down") else f"to the {args.to}"
    print(f"moved {run['id']} ({shown(run['name'])}) {where}: "
          f"number {place} of {len(line)} waiting in {shown(run['queue'])}")
    return 0
