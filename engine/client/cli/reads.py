"""The commands that read: ls, show, logs, gpu and top (export has its own module).

None of them changes a run; ``ls`` is the one timed at scale, so this module
imports nothing it does not need.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from typing import Any

from engine.client.cli.common import connect, no_sweep_text, terminal_width
from engine.client.cli.ls_corr import print_correlations
from engine.client.cli.ls_groups import SETTING_SORTS, print_settings
from engine.client.cli.ls_sweeps import SWEEP_SORTS, print_sweeps
from engine.client.client import Client, EngineError
from engine.client.eta import seconds_left
from engine.client.events import RunDescription, RunInfo, Sample
from engine.client.run_detail import detail_lines, plain_text, retried_mark
from engine.client.run_select import (
    RUN_SORTS,
    SHOWN_VALUE,
    ordered,
    parse_filter,
    run_value,
    unknown_value,
    value_order,
    value_text,
)
from engine.common.format import (
    SHOWN_NAME,
    duration_text,
    fit_columns,
    format_bytes,
    format_number,
    format_table,
    gpu_lines,
    host_lines,
    json_text,
    run_usage_rows,
    shown,
)
from engine.common.runs import ATTACHED_OUTPUT, RunState
from engine.common.settings import unknown_keys

LS_HEADER = ["ID", "NAME", "STATE", "STEP", "LOSS", "BEST", "ETA", "DEVICE", "PARENT"]
# A state with its condition is cut to this ('queued (queue night full, 4/4 runni…'):
# one long reason must not widen the column for 500 rows; 'traintop show' has all of it.
SHOWN_STATE = 40
SHOWN_TAGS = 40


def _released(run: RunInfo) -> bool:
    """Whether a run that goes on later has its memory released (a killed one has none)."""
    return run.released and not RunState(run.state).terminal


def run_line_values(run: RunInfo) -> list[str]:
    """The columns of ``traintop ls`` for one run (``LS_HEADER``)."""
    step = str(run.step) + (f"/{run.total_steps}" if run.total_steps else "")
    state = run.state + ("*" if _released(run) else "") + retried_mark(run)
    if run.condition:
        state += f" ({run.condition})"
    parent = ""
    if run.parent_id:
        parent = run.parent_id + (f"@{run.fork_step}" if run.fork_step is not None else "")
    loss = format_number(run.last.get(run.loss_key))
    best = format_number(run.best.get(run.loss_key))
    eta = duration_text(seconds_left(run, run.rate))  # (a rate is listed only running)
    return [run.id, shown(run.name, SHOWN_NAME), shown(state, SHOWN_STATE), step, loss, best,
            eta, run.device or "", parent]


def named_values(args: argparse.Namespace) -> list[str]:
    """The values ``ls`` is asked to show, sort or filter by (beyond its own columns)."""
    own = ("created", *RUN_SORTS, *(SETTING_SORTS if args.settings else ()),
           *(SWEEP_SORTS if args.sweeps else ()))
    sort = [] if args.sort in own else [args.sort]
    return [*args.columns, *parse_filter(" ".join(args.words)).names, *sort]


def _check_names(runs: list[RunInfo], names: list[str]) -> None:
    """Say so, with the closest names, when no run has a value by one of ``names``."""
    for name in names:
        problem = unknown_value(runs, name)
        if problem is not None:
            raise EngineError("unknown_value", problem)


def select_runs(runs: list[RunInfo], args: argparse.Namespace) -> list[RunInfo]:
    """The runs ``ls`` shows of those its filter kept (``filter_runs``), in its order:
    sorted, then cut to ``--limit`` (the newest, or the first of the sort)."""
    sort = args.sort
    key = RUN_SORTS.get(sort) or (lambda r: value_order(run_value(r, sort)))
    return ordered(runs, key, sort, args.reverse, args.limit)


def filter_runs(runs: list[RunInfo], args: argparse.Namespace) -> list[RunInfo]:
    """The runs that hold every word and condition, in the states, sweep, time and tags
    asked for, in creation order; an unknown sweep or value name is refused."""
    if args.sweep is not None and not any(r.sweep == args.sweep for r in runs):
        sweeps = (r.sweep for r in runs if r.sweep)
        raise EngineError("unknown_sweep", no_sweep_text(args.sweep, sweeps))
    if runs:
        _check_names(runs, named_values(args))
    tags = {tag for r in runs for tag in r.tags}
    for tag in args.tag:
        if tag not in tags:
            near = difflib.get_close_matches(tag, sorted(tags), n=1)
            hint = f"did you mean {near[0]!r}?" if near else (
                f"tags: {' '.join(sorted(tags)[:10])}" if tags else "no run has a tag yet")
            raise EngineError("unknown_tag", f"no run is tagged {shown(tag)!r} ({hint})")
    wanted = parse_filter(" ".join(args.words))
    return [
        r for r in runs
        if (args.state is None or r.state in args.state)
        and (args.sweep is None or r.sweep == args.sweep)
        and (args.since is None or r.created >= args.since)
        and all(tag in r.tags for tag in args.tag)
        and wanted.matches(r)
    ]


def cmd_ls(args: argparse.Namespace) -> int:
    named = named_values(args)
    sizes = args.size or args.sort == "size" or "size" in named
    highest = any(name.startswith("max:") for name in named)
    with connect() as client:
        listed = client.all_runs(best=True, sizes=sizes, highest=highest)
    if client.store_problem:
        print(f"traintop: warning: {client.store_problem}", file=sys.stderr)
    everything = [RunInfo.from_wire(r) for r in listed]
    if args.corr:
        if args.settings or args.by or args.sweeps or args.quiet:
            raise EngineError("bad_request", "--corr correlates the runs listed: not with "
                              "-G, --by, --sweeps or -q")
        print_correlations(filter_runs(everything, args), args)
        return 0
    if args.sweeps:
        if args.settings or args.by or args.columns or args.sweep:
            raise EngineError("bad_request", "--sweeps lists sweeps: not with -G, --by, -c "
                              "or --sweep (which lists one sweep's runs)")
        if args.sort not in SWEEP_SORTS:
            raise EngineError("bad_request", f"--sweeps sorts by {', '.join(SWEEP_SORTS)}, "
                              f"not {shown(args.sort)}")
        print_sweeps(filter_runs(everything, args), args, len(listed))
        return 0
    if args.by:  # (-G by keys)
        args.settings = True
        problem = unknown_keys((r.config for r in everything), args.by) if everything else None
        if problem is not None:
            raise EngineError("unknown_value", problem)
    matched = filter_runs(everything, args)
    runs = matched if args.settings else select_runs(matched, args)
    if args.settings and (runs or args.json or args.quiet):
        print_settings(runs, args, len(listed), sizes)
        return 0
    if args.json:
        by_id = {r["id"]: r for r in listed}
        print(json_text([by_id[r.id] for r in runs]))
        return 0
    if args.quiet:
        if runs:
            print("\n".join(r.id for r in runs))
        return 0
    if not listed:
        print("no runs yet: try 'traintop start charlm'")
        return 0
    if not runs:
        print(f"no run of the {len(listed)} matches")
        return 0
    header, rows = list(LS_HEADER), [run_line_values(r) for r in runs]
    for name in args.columns:
        header.append(shown(name, SHOWN_VALUE))
        rows = [[*row, value_text(run_value(r, name))] for row, r in zip(rows, runs, strict=True)]
    if sizes:
        header.append("SIZE")
        rows = [[*row, format_bytes(r.size)] for row, r in zip(rows, runs, strict=True)]
    if any(r.tags for r in runs):  # a column only for those who tag
        header.append("TAGS")
        rows = [[*row, shown(" ".join(r.tags), SHOWN_TAGS)]
                for row, r in zip(rows, runs, strict=True)]
    width = terminal_width()
    if width is not None:  # the state's reason, then the name, then tags give way first
        shrink = [(2, 16, False), (1, 14, True)] + (
            [(len(header) - 1, 10, False)] if header[-1] == "TAGS" else [])
        header, *rows = fit_columns(header, rows, width, shrink)
    print(format_table(header, rows))
    footer = [f"{len(runs)} of {len(listed)} runs"] if len(runs) < len(listed) else []
    if len(matched) not in (len(runs), len(listed)):  # cut by -n from those the filter kept
        footer = [f"{len(runs)} of the {len(matched)} that match, of {len(listed)} runs"]
    if sizes:
        footer.append(f"{format_bytes(sum(r.size or 0 for r in runs))} of files")
    if any(_released(r) for r in runs):  # the marks, said where they are seen
        footer.append("*: memory released, resumes from its checkpoint")
    if any(r.retried for r in runs):
        footer.append("↻N: taken up again N times after failing")
    if footer:
        print(f"({'; '.join(footer)})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with connect() as client:
        run = client.call("get_run", run=args.run, size=True)
    if args.json:
        print(json_text(run))
        return 0
    hint = f"'traintop resume {run['id']}' or 'traintop fork {run['id']}'"
    print(plain_text(detail_lines(RunDescription.from_wire(run), hint)))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    stream = "stderr" if args.stderr else "stdout"
    with connect() as client:
        reply = client.call("read_log", run=args.run, stream=stream, offset=-args.bytes)
        text = reply["data"]
        if args.bytes and reply["offset"] > args.bytes and "\n" in text:
            text = text.split("\n", 1)[1]  # start on a whole line
        sys.stdout.write(text)
        sys.stdout.flush()
        if not text and not args.follow:  # an empty answer would look like a failure
            _say_no_output(client, args.run, stream, reply["state"])
        while args.follow:
            offset = reply["offset"]
            reply = client.call("read_log", run=args.run, stream=stream, offset=offset)
            sys.stdout.write(reply["data"])
            sys.stdout.flush()
            if not reply["data"]:
                if RunState(reply["state"]).terminal:
                    break
                time.sleep(0.25)
    return 0


def _say_no_output(client: Client, run: str, stream: str, state: str) -> None:
    """One line on stderr for a run with nothing on ``stream``: where its output is."""
    other = "stdout" if stream == "stderr" else "stderr"
    if client.call("read_log", run=run, stream=other, offset=-1)["data"]:
        flag = "" if other == "stdout" else " --stderr"
        said = f"nothing on its {stream}; its {other} has output: traintop logs {run}{flag}"
    elif client.call("get_run", run=run).get("kind") == "attached":
        said = ATTACHED_OUTPUT
    else:
        said = "it printed nothing" if RunState(state).terminal else "no output yet"
    print(f"traintop: {said}", file=sys.stderr)


def _latest_sample(client: Client) -> dict[str, Any] | None:
    """The newest telemetry sample, waiting up to two intervals for a fresh daemon's first."""
    reply = client.call("telemetry")
    deadline = time.monotonic() + 2 * reply["interval"] + 1
    while reply["latest"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
        reply = client.call("telemetry")
    latest: dict[str, Any] | None = reply["latest"]
    return latest


def _sample_and_names(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The latest telemetry sample and every run's name, for ``gpu`` and ``top``."""
    with connect() as client:
        sample = _latest_sample(client)
        names = {r["id"]: r["name"] for r in client.all_runs()}
    if sample is None:
        raise EngineError("no_sample", "no telemetry sample yet; try again in a second")
    return sample, names


def cmd_gpu(args: argparse.Namespace) -> int:
    sample, names = _sample_and_names(args)
    if args.json:
        print(
            json_text(
                {
                    "gpus": sample["gpus"],
                    "others": sample["others"],
                    "gpu_status": sample["gpu_status"],
                }
            )
        )
    else:
        print("\n".join(gpu_lines(Sample.from_wire(sample), names)))
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    sample, names = _sample_and_names(args)
    if args.json:
        print(json_text(sample))
        return 0
    typed = Sample.from_wire(sample)
    lines = [*host_lines(typed), "", *gpu_lines(typed, names)]
    rows = run_usage_rows(typed, names)
    if rows:
        lines += [
            "",
            format_table(["ID", "NAME", "CPU", "RSS", "THREADS", "PROCS", "GPU MEM"], rows),
        ]
    print("\n".join(lines))
    return 0

