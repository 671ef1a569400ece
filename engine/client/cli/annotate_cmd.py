"""``traintop tag`` and ``traintop note``: what the user says of runs."""

from __future__ import annotations

import argparse
import sys

from engine.client.cli.common import UsageError, ask_each, connect, resolve_runs
from engine.common.format import shown
from engine.common.runs import tag_problem


def cmd_tag(args: argparse.Namespace) -> int:
    """Tag (or with -d untag) every run named; a name that matches none changes nothing."""
    problem = tag_problem(args.tag)
    if problem is not None:
        raise UsageError(problem)
    change = {"remove": [args.tag]} if args.delete else {"add": [args.tag]}
    with connect() as client:
        runs = resolve_runs(client, args.runs)
        status = 0
        if args.delete:  # a tag a run has not: most often misspelt; said, not passed over
            for run_id, run in list(runs.items()):
                if args.tag not in run["tags"]:
                    del runs[run_id]
                    has = " ".join(shown(t) for t in run["tags"]) or "none"
                    print(f"traintop: {run_id} has no tag {shown(args.tag)!r} (its tags: "
                          f"{has})", file=sys.stderr)
                    status = 1
        taken, refused = ask_each(client, runs, "annotate", **change)
        status = max(status, refused)
    for run in taken.values():
        tags = " ".join(shown(t) for t in run["tags"]) or "no tags"
        print(f"{run['id']} ({shown(run['name'])}): {tags}")
    return status


def cmd_note(args: argparse.Namespace) -> int:
    """Print a run's note, or set it (an empty TEXT clears it)."""
    with connect() as client:
        if args.text is None:
            run = client.call("get_run", run=args.run)
        else:
            run = client.call("annotate", run=args.run, note=args.text)
    note = run.get("note")
    if args.text is None:
        print("\n".join(shown(line) for line in note.splitlines()) if note
              else f"{run['id']} has no note")
    else:
        print(f"{run['id']} ({shown(run['name'])}): " + ("note set" if note else "note cleared"))
    return 0
