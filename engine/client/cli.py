"""The ``traintop`` command line.

Every user mistake ends as one line on stderr and a non-zero exit status:
2 for a malformed command line, 1 for a request the engine refused.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TextIO

from engine.client.client import Client, EngineError, EngineUnavailable
from engine.client.demo import FORK_AFTER_STEPS, maybe_fork, start_demo
from engine.client.events import RunDescription, RunInfo, Sample
from engine.client.linger import logout_warning
from engine.client.run_detail import detail_lines, plain_text
from engine.common.format import (
    format_table,
    gpu_lines,
    host_lines,
    json_text,
    number_text,
    run_line_values,
    run_usage_rows,
    shown,
)
from engine.common.run_env import run_env
from engine.common.runs import DEFAULT_KILL_GRACE, RunState

ACTIVE_WAIT = ("queued", "starting")
# How long start and fork wait for a running run's first step, to catch early failures.
FIRST_STEP_WAIT = 5.0


class UsageError(Exception):
    """A malformed command line."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _client(args: argparse.Namespace, autostart: bool = True) -> Client:
    return Client().connect(autostart=autostart)


def _wait_for(
    client: Client, run_id: str, done: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """Poll a run until ``done(run)`` or ``timeout`` seconds; returns the last view."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = client.call("get_run", run=run_id)
    while not done(run) and time.monotonic() < deadline:
        time.sleep(0.1)
        run = client.call("get_run", run=run_id)
    return run


def _wait_training(client: Client, run_id: str) -> dict[str, Any]:
    """Wait until a new run has taken a step (or ended, or a few seconds passed).

    Seeing ``running`` is not enough: a workload that raises in its first step
    is reported as a failure, not as started.
    """
    run = _wait_for(client, run_id, lambda r: r["state"] not in ACTIVE_WAIT, 60)
    if run["state"] == "running":
        first = run["step"]
        run = _wait_for(
            client,
            run_id,
            lambda r: r["state"] != "running" or r["step"] > first,
            FIRST_STEP_WAIT,
        )
    return run


def _report_new(args: argparse.Namespace, run: dict[str, Any], line: str) -> int:
    """Print a run just started (as JSON with --json, else ``line``); 1 if it failed."""
    print(json_text(run) if args.json else line)
    return _fail_if_failed(run)


def _fail_if_failed(run: dict[str, Any]) -> int:
    if run["state"] == "failed":
        print(
            f"traintop: run {run['id']} ({shown(run['name'])}) failed: {run['exit_reason']} "
            f"(see 'traintop logs {run['id']} --stderr')",
            file=sys.stderr,
        )
        return 1
    return 0


def _ended(run: dict[str, Any]) -> bool:
    return RunState(run["state"]).terminal


def _describe(run: dict[str, Any]) -> str:
    step = f"step {run['step']}" + (f"/{run['total_steps']}" if run["total_steps"] else "")
    return f"{run['id']} ({shown(run['name'])}) {run['state']} at {step} on {run['device']}"


def _run_env(args: argparse.Namespace) -> dict[str, str]:
    """What of this shell's environment the new run gets (written to its launch.json)."""
    return run_env(os.environ, args.env, args.env_all)


def _add_env_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME",
        help="also pass this environment variable to the run (repeatable); by default a run "
        "gets only PATH, PYTHONPATH, CUDA_*, locale and the like",
    )
    p.add_argument(
        "--env-all", action="store_true", help="pass the whole environment, secrets included"
    )


# -- commands ------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.text is not None:
        overrides.append(f"text={os.path.abspath(args.text)}")
    with _client(args) as client:
        run = client.call(
            "start",
            workload=args.workload,
            overrides=overrides,
            name=args.name,
            device=args.device,
            steps=args.steps,
            cwd=os.getcwd(),
            env=_run_env(args),
        )
        if not args.no_wait:
            run = _wait_training(client, run["id"])
    return _report_new(args, run, f"started {_describe(run)}")


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("no command given: traintop run [--name N] -- CMD [ARGS...]")
    with _client(args) as client:
        run = client.call(
            "run_command",
            command=command,
            name=args.name,
            loss_pattern=args.loss_pattern,
            cwd=os.getcwd(),
            env=_run_env(args),
        )
        if not args.no_wait:
            run = _wait_training(client, run["id"])  # a first metric, an exit, or 5 s
    line = f"started {run['id']} ({shown(run['name'])}) {run['state']}: {' '.join(command)}"
    return _report_new(args, run, line)


def cmd_ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        runs = client.all_runs()
    if args.json:
        print(json_text(runs))
        return 0
    if not runs:
        print("no runs yet: try 'traintop start charlm'")
        return 0
    rows = [run_line_values(RunInfo.from_wire(r)) for r in runs]
    print(format_table(["ID", "NAME", "STATE", "STEP", "LOSS", "DEVICE", "PARENT"], rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        run = client.call("get_run", run=args.run)
    if args.json:
        print(json_text(run))
        return 0
    hint = f"'traintop resume {run['id']}' or 'traintop fork {run['id']}'"
    print(plain_text(detail_lines(RunDescription.from_wire(run), hint)))
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    with _client(args) as client:
        run = client.call("pause", run=args.run, release=args.release)
        if args.release:

            def done(r: dict[str, Any]) -> bool:
                return r["released"] or _ended(r)
        else:
            done = lambda r: r["state"] not in ("running", "starting")  # noqa: E731
        run = _wait_for(client, run["id"], done, args.timeout)
    if run["state"] in ("running", "starting") or (args.release and not run["released"]):
        print(f"pause of {run['id']} requested; it takes effect at its next step")
        return 0
    print(f"paused {_describe(run)}" + (" (memory released)" if run["released"] else ""))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    with _client(args) as client:
        run = client.call("resume", run=args.run)
        since = run.get("resumed_from")  # a failed run: from its last complete checkpoint
        run = _wait_for(
            client, run["id"], lambda r: r["state"] not in ("paused", *ACTIVE_WAIT), args.timeout
        )
    where = "" if since is None else f" (from its last complete checkpoint, at step {since})"
    print(f"resumed {_describe(run)}{where}")
    return _fail_if_failed(run)


def cmd_fork(args: argparse.Namespace) -> int:
    with _client(args) as client:
        child = client.call(
            "fork",
            run=args.run,
            overrides=list(args.overrides),
            name=args.name,
            device=args.device,
        )
        if not args.no_wait:
            child = _wait_training(client, child["id"])
    where = f" at step {child['fork_step']}" if child["fork_step"] is not None else ""
    return _report_new(args, child, f"forked {child['parent_id']}{where} -> {_describe(child)}")


def cmd_kill(args: argparse.Namespace) -> int:
    with _client(args) as client:
        run = client.call("kill", run=args.run, grace=args.grace)
        run = _wait_for(
            client,
            run["id"],
            _ended,
            2 * args.grace + 10,  # a wrapped command: SIGINT, SIGTERM, then SIGKILL
        )
    print(
        f"killed {run['id']} ({shown(run['name'])})"
        if run["state"] == "killed"
        else f"{run['id']} is {run['state']}"
    )
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    stream = "stderr" if args.stderr else "stdout"
    with _client(args) as client:
        reply = client.call("read_log", run=args.run, stream=stream, offset=-args.bytes)
        text = reply["data"]
        if args.bytes and reply["offset"] > args.bytes and "\n" in text:
            text = text.split("\n", 1)[1]  # start on a whole line
        sys.stdout.write(text)
        sys.stdout.flush()
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


def cmd_export(args: argparse.Namespace) -> int:
    """Write a run's points block by block, so a run of millions of points streams out."""
    with _client(args) as client:
        run = client.call("get_run", run=args.run)
        blocks = client.series_blocks(run["id"])
        out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
        try:
            if args.format == "csv":
                writer = csv.writer(out)
                writer.writerow(["run", "step", "key", "value", "time"])
                for block in blocks:
                    key = block["key"]
                    writer.writerows(
                        [run["id"], step, key, number_text(value), us / 1e6]
                        for step, value, us in zip(
                            block["steps"], block["values"], block["times_us"], strict=True
                        )
                    )
            else:
                _export_json(out, run, blocks)
        finally:
            if out is not sys.stdout:
                out.close()
    return 0


EXPORT_FIELDS = (
    "id", "name", "workload", "config", "state", "parent_id", "fork_step", "device", "step",
    "total_steps",
)


def _export_json(out: TextIO, run: dict[str, Any], blocks: Iterable[dict[str, Any]]) -> None:
    """``{"run": {...}, "metrics": {key: [[step, value, time], ...]}}``, written as it comes."""
    meta = {k: run[k] for k in EXPORT_FIELDS}
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
    out.write(("]" if current is not None else "") + "}}\n")


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
    with _client(args) as client:
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


def cmd_demo(args: argparse.Namespace) -> int:
    with _client(args) as client:
        runs = start_demo(client)
        fork = maybe_fork(client)
    print(
        f"demo: {len(runs)} charlm runs; a fork follows at step {FORK_AFTER_STEPS}"
        + (f" (forked {fork['id']})" if fork else "")
    )
    print("watch them with: traintop")
    return 0


def _rebuild() -> int:
    from engine.rundir.paths import StatePaths, state_home
    from engine.rundir.state_dir import UnsafeStateDir
    from engine.server.rebuild import RebuildError, rebuild_store

    paths = StatePaths(state_home())
    try:
        done = rebuild_store(paths)
    except (RebuildError, UnsafeStateDir) as exc:
        raise EngineError("rebuild", str(exc)) from None
    print(f"rebuilt {paths.store} from {done.runs} run directories ({done.points} points)")
    print(f"the old store is kept as {done.aside}" if done.aside else "there was no old store")
    if done.skipped:
        print(f"skipped (no launch.json): {', '.join(done.skipped)}")
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    if args.action == "rebuild":
        return _rebuild()
    if args.action == "start":
        with _client(args) as client:
            status = client.call("status")
        print(f"engine {status['pid']} serving {status['home']}")
        return 0
    try:
        client = _client(args, autostart=False)
    except EngineUnavailable:
        print("engine not running")
        return 0 if args.action == "stop" else 3
    with client:
        if args.action == "stop":
            reply = client.call("shutdown")
            pid = client.server_pid
            print(f"engine {pid} stopping; {reply['live_runs']} runs keep going")
            _wait_gone(pid)
            return 0
        status = client.call("status")
    if args.json:
        print(json_text(status))
        return 0
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status["runs"].items())) or "no runs"
    print(f"engine {status['pid']} up {status['uptime']:.0f}s, {status['home']}")
    print(f"runs: {counts}; GPUs: {status['gpus']}")
    warning = logout_warning()
    if warning:
        print(f"warning: {warning}")
    return 0


def _wait_gone(pid: int | None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


# -- parser --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="traintop",
        description="top for training runs. With no command (or --readonly) it opens the "
        "terminal UI; 'traintop demo' in a terminal starts demo runs and opens it.",
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("start", cmd_start, "start a run of a workload (built-in name or file.py:function)")
    p.add_argument("workload")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--name")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: a free GPU, else cpu)")
    p.add_argument("--steps", type=int)
    p.add_argument("--text", help="charlm: train on this text file")
    p.add_argument("--no-wait", action="store_true", help="return before the run is training")
    p.add_argument("--json", action="store_true")
    _add_env_options(p)

    p = add("run", cmd_run, "run any command as a run, with metrics read from its output")
    p.add_argument("--name")
    p.add_argument(
        "--loss-pattern",
        metavar="REGEX",
        help="read the loss with this regex (group 'loss' or the first group; group 'step')",
    )
    p.add_argument("--no-wait", action="store_true", help="return before the command is up")
    p.add_argument("--json", action="store_true")
    _add_env_options(p)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    p = add("ls", cmd_ls, "list runs")
    p.add_argument("--json", action="store_true")

    p = add("show", cmd_show, "show one run: config, lineage, events, exit")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")

    p = add("pause", cmd_pause, "pause a run at its next step")
    p.add_argument("run")
    p.add_argument(
        "--release",
        action="store_true",
        help="checkpoint and end the worker, freeing its (GPU) memory",
    )
    p.add_argument("--timeout", type=float, default=10.0)

    p = add("resume", cmd_resume, "resume a paused run")
    p.add_argument("run")
    p.add_argument("--timeout", type=float, default=30.0)

    p = add("fork", cmd_fork, "fork a run at its current step, with config overrides")
    p.add_argument("run")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--name")
    p.add_argument("--device")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--json", action="store_true")

    p = add(
        "kill",
        cmd_kill,
        "stop a run: SIGTERM, then SIGKILL after a grace period "
        "(a wrapped command gets SIGINT first, then SIGTERM after the grace period)",
    )
    p.add_argument("run")
    p.add_argument(
        "--grace", type=float, default=DEFAULT_KILL_GRACE, help="seconds before SIGKILL"
    )

    p = add("logs", cmd_logs, "print a run's output")
    p.add_argument("run")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--stderr", action="store_true")
    p.add_argument("--bytes", type=int, default=64 * 1024, help="how much of the end to show")

    p = add("export", cmd_export, "export a run's metrics")
    p.add_argument("run")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("-o", "--output")

    p = add("gpu", cmd_gpu, "current GPU figures and which runs use each GPU")
    p.add_argument("--json", action="store_true")

    p = add("top", cmd_top, "current host, GPU and per-run resource use")
    p.add_argument("--json", action="store_true")

    add("demo", cmd_demo, "start demo charlm runs (and a fork); in a terminal, open the TUI")

    p = add(
        "engine",
        cmd_engine,
        "start, stop or inspect the engine daemon; 'rebuild' makes a new store from the run "
        "directories (the engine stopped), keeping the old one aside",
    )
    p.add_argument("action", choices=["start", "stop", "status", "rebuild"])
    p.add_argument("--json", action="store_true")
    return parser


def _take_overrides(
    parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]
) -> None:
    """Give a command's ``key=value`` words found after its options to its overrides.

    argparse fills a positional list at its first chance, so in ``start charlm
    --device cpu lr=1e-3`` the overrides are already taken (empty) when ``lr=1e-3``
    comes; it is left over. Options and overrides may come in any order.
    """
    if isinstance(getattr(args, "overrides", None), list):
        args.overrides += [word for word in extras if not word.startswith("-")]
        extras = [word for word in extras if word.startswith("-")]
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``traintop`` script."""
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        _take_overrides(parser, args, extras)
        if args.command is None:
            parser.print_help()
            return 0
        result: int = args.func(args)
        return result
    except UsageError as exc:
        print(f"traintop: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:
        print(f"traintop: {exc.message}", file=sys.stderr)
        return 1
    except EngineUnavailable as exc:
        print(f"traintop: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
