"""``traintop export RUN...``: every point of one run or of many, streamed block by block.

A sweep of hundreds of runs, or a run of millions of points, goes out in pages of
the daemon's columns, never held whole. CSV is long (one row a point, the run in
its first column), so runs simply follow one another; JSON is one object per run
(an array of them for several, ``jsonl`` one a line). ``-o FILE`` appears only
once the export is whole: a typo in a name, an unknown key or an engine that goes
away leaves an earlier FILE as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from engine.client.cli.common import UsageError, connect, named_runs
from engine.client.client import Client, EngineError
from engine.common.format import first_unknown, json_text, number_text, shown

CSV_HEADER = ["run", "step", "key", "value", "time"]
EXPORT_FIELDS = (
    "id", "name", "workload", "config", "state", "parent_id", "fork_step", "device", "step",
    "total_steps", "sweep", "tags",
)


# The format a file name asks for, by how it ends.
SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def cmd_export(args: argparse.Namespace) -> int:
    keys = [k for given in args.keys for k in given.split(",") if k]
    form = export_format(args.format, args.output)
    tally = [0]  # points written
    with connect() as client:
        runs = list(named_runs(client, args, "export", lambda run: True).values())
        problem = unknown_keys(runs, keys)
        if problem:
            raise EngineError("unknown_key", problem)
        with _output(args.output) as out:
            if form == "csv":
                _write_csv(out, client, runs, keys, tally)
            else:
                _write_json(out, client, runs, keys, tally, lines=form == "jsonl")
    if args.output is not None:  # standard output is the data; a file is said once whole
        print(f"wrote {tally[0]} points of {len(runs)} run{'s' if len(runs) != 1 else ''} "
              f"to {args.output} ({form})", file=sys.stderr)
    return 0


def export_format(given: str | None, output: str | None) -> str:
    """The format asked for, or the one the output's name ends with (csv if it ends with
    none); a name that says another format than the one given, or one it cannot write
    (``.xlsx``), is refused rather than filled with what its name does not say."""
    suffix = Path(output).suffix.lower() if output else ""
    implied = SUFFIX_FORMATS.get(suffix)
    if given is not None and implied is not None and given != implied:
        raise UsageError(f"--format {given} does not go with {output!r}: its name says "
                         f"{implied}")
    if given is None and suffix and implied is None:
        raise UsageError(f"cannot write {output!r} as its name says ({suffix}): export "
                         "writes csv, json or jsonl (--format says which)")
    return given or implied or "csv"


def unknown_keys(runs: Iterable[dict[str, Any]], keys: list[str]) -> str | None:
    """Why a key asked for is in none of the runs, with the closest keys; None: all are."""
    have = {k for run in runs for k in run["last"]}
    found = first_unknown(keys, have)
    if found is None:
        return None
    key, close = found
    hint = f"; did you mean {', '.join(close)}?" if close else (
        f"; they have {', '.join(sorted(have)[:10])}" if have else "; they have no points")
    return f"no run named has a metric {shown(key)!r}{hint}"


def _blocks(client: Client, run: dict[str, Any], keys: list[str],
            tally: list[int]) -> Iterator[dict[str, Any]]:
    """The run's points as column blocks, key by key: every key, or those asked for that
    it has, in the order asked; ``tally[0]`` counts their points."""
    asked = [None] if not keys else [key for key in keys if key in run["last"]]
    for key in asked:
        for block in client.series_blocks(run["id"], key):
            tally[0] += len(block["steps"])
            yield block


def _write_csv(out: TextIO, client: Client, runs: list[dict[str, Any]], keys: list[str],
               tally: list[int]) -> None:
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for run in runs:
        for block in _blocks(client, run, keys, tally):
            key = block["key"]
            writer.writerows(
                [run["id"], step, key, number_text(value), us / 1e6]
                for step, value, us in zip(
                    block["steps"], block["values"], block["times_us"], strict=True
                )
            )


def _write_json(
    out: TextIO, client: Client, runs: list[dict[str, Any]], keys: list[str],
    tally: list[int], lines: bool,
) -> None:
    """One object per run: an object for one run, an array for several; ``lines``: one
    object a line, whatever their number."""
    many = len(runs) > 1 and not lines
    out.write("[" if many else "")
    for i, run in enumerate(runs):
        if i:
            out.write("\n" if lines else ",\n")
        _write_run_json(out, run, _blocks(client, run, keys, tally))
    out.write("]\n" if many else "\n")


def _write_run_json(out: TextIO, run: dict[str, Any], blocks: Iterable[dict[str, Any]]) -> None:
    """``{"run": {...}, "metrics": {key: [[step, value, time], ...]}}``, written as it comes."""
    meta = {k: run.get(k) for k in EXPORT_FIELDS}
    out.write('{"run": ' + json_text(meta) + ', "metrics": {')
    current: str | None = None
    for block in blocks:
        times = [us / 1e6 for us in block["times_us"]]
        points = zip(block["steps"], block["values"], times, strict=True)
        if block["key"] != current:
            if current is not None:
                out.write("], ")
            current = block["key"]
            out.write(json_text(current) + ": [")
        elif block["steps"]:
            out.write(", ")
        out.write(json_text([list(p) for p in points])[1:-1])  # the points, not the brackets
    out.write(("]" if current is not None else "") + "}}")


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """Standard output, or a file beside ``path`` renamed onto it once written whole (and
    removed, leaving ``path`` as it was, when the export fails)."""
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    part = target.with_name(f".{target.name}.part-{os.getpid()}")
    if target.is_dir():
        raise EngineError("bad_output", f"cannot write {path}: it is a directory (give a "
                          "file's name, e.g. runs.csv)")
    try:
        out = open(part, "w", newline="")  # noqa: SIM115 (closed below, before the rename)
    except OSError as exc:  # said of the user's path, not of the hidden file beside it
        why = "no such directory" if isinstance(exc, FileNotFoundError) else exc.strerror
        raise EngineError("bad_output", f"cannot write {path}: {why or exc}") from None
    try:
        with out:
            yield out
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
