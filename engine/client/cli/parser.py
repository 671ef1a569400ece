"""The ``traintop`` command line's grammar: every command, its arguments and its help.

A malformed command line is one line (``UsageError``), never argparse's usage block.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import time
from collections.abc import Callable
from typing import Any, NoReturn

from engine.client.cli.common import UsageError
from engine.client.run_select import RUN_SORTS, parse_condition, parse_since, parse_states
from engine.common.early_stop import DEFAULT_ETA, MODES
from engine.common.pbt import DEFAULT_QUANTILE, DEFAULT_RESAMPLE
from engine.common.runs import DEFAULT_DIVERGENCE_FACTOR, DEFAULT_KILL_GRACE
from engine.common.search import DEFAULT_STARTUP, METHODS
from engine.common.sweep import MAX_SWEEP_RUNS


def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """Command ``name`` of ``engine.client.cli.<module>``, imported only when it runs, so
    ``traintop ls`` does not load what sweep, restart or export need (tomllib, random...)."""

    def run(args: argparse.Namespace) -> int:
        func: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(f"engine.client.cli.{module}"), name
        )
        return func(args)

    return run


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line instead of a usage block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}  # the top one's subcommands

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{_closest_choice(message)} (see '{self.prog} --help')")

    def unknown_words(self, command: str | None, extras: list[str]) -> NoReturn:
        """Words no option of ``command`` takes: said with that command's help, and the
        option closest to each (``--sweeps``? for ``--sweep``)."""
        sub = self.commands.get(command or "")
        if sub is None:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        options = [o for action in sub._actions for o in action.option_strings]
        near = [m[0] for w in extras if w.startswith("--")
                if (m := difflib.get_close_matches(w.partition("=")[0], options, n=1))]
        hint = f"; did you mean {' '.join(near)}?" if near else ""
        sub.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


def _closest_choice(message: str) -> str:
    """argparse's "invalid choice: 'lss' (choose from ...)" as "invalid choice: 'lss';
    did you mean 'ls'?" when one is close; any other message as it is."""
    found = re.match(r"(argument .*: invalid choice: '.*') \(choose from (.*)\)$", message)
    near = difflib.get_close_matches(found[1].rsplit("'", 2)[1], re.findall(
        r"'([^']*)'", found[2]), n=1) if found else []
    return f"{found[1]}; did you mean {near[0]!r}?" if found and near else message


def _seconds(text: str) -> float:
    """A number of seconds, zero or more (argparse says what was wrong with the word)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, not {text}")
    return value


def _whole(least: int) -> Callable[[str], int]:
    """A type for argparse: a whole number of at least ``least``."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}"
                                             if least else f"must be 0 or more, not {value}")
        return value

    return whole


_count = _whole(1)  # how many (runs, trials...)
_size = _whole(0)  # bytes


def _since(text: str) -> float:
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _filter_word(text: str) -> str:
    """A word of ``ls``'s filter, checked if it is a condition (``lr<1e-3``, or after '-'
    one that leaves out: ``-lr<1e-3``)."""
    try:
        parse_condition(text[1:] if text.startswith("-") else text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _names(text: str) -> list[str]:
    """``lr,batch,min:val_loss``: the values ``ls -c`` shows."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no value named: give config keys or metrics, "
                                         "e.g. -c lr,batch,min:val_loss")
    return names


def _states(text: str) -> frozenset[str]:
    try:
        return parse_states(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_env_options(p: argparse.ArgumentParser) -> None:
    """``--env NAME`` and ``--env-all``: what of this shell's environment a new run gets."""
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


def _add_metric_options(p: argparse.ArgumentParser) -> None:
    """``--metric NAME=REGEX`` and ``--only-patterns``: how output lines become metrics."""
    p.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME=REGEX",
        help="record series NAME from lines this regex matches, on stdout or stderr (group "
        "NAME or 'value' or the first group; group 'step'); repeatable",
    )
    p.add_argument(
        "--only-patterns",
        action="store_true",
        help="record only what --metric and --loss-pattern match: no names guessed",
    )


def _add_divergence_options(p: argparse.ArgumentParser, default: str) -> None:
    """``--no-divergence-pause`` and ``--divergence-factor F``: the run's divergence watch."""
    p.add_argument(
        "--no-divergence-pause",
        dest="divergence_pause",
        action="store_false",
        default=None,
        help="never pause this run when its loss turns NaN or inf or leaps above its EMA",
    )
    p.add_argument(
        "--divergence-factor",
        type=float,
        metavar="F",
        help=f"pause the run when its loss exceeds F times its EMA ({default})",
    )


def _add_fault_options(p: argparse.ArgumentParser, default: str) -> None:
    """``--checkpoint-every`` and ``--retries``: what a crash of the run costs."""
    p.add_argument(
        "--checkpoint-every", metavar="N|TIME",
        help="checkpoint every N steps or every TIME (90s, 10m, 2h) of training, keeping "
        f"the newest: a crash costs at most that much ('off': none; {default})",
    )
    p.add_argument(
        "--retries", type=int, metavar="N",
        help="when the run fails, go on from its newest checkpoint up to N times "
        f"({default})",
    )


def _add_sweep_option(p: argparse.ArgumentParser, which: str) -> None:
    """``--sweep NAME`` (again for several): ``which`` of a sweep's runs it takes."""
    p.add_argument("--sweep", action="append", default=[], metavar="NAME",
                   help=f"{which}; again for several")


def _add_queue_options(p: argparse.ArgumentParser) -> None:
    """Where a new run waits and what it needs: queue, priority, --after, GPUs; and its
    tags."""
    p.add_argument("--queue", metavar="NAME", help="wait in this queue (default: default)")
    p.add_argument(
        "--priority", type=int, metavar="N", help="higher starts first within a queue (default 0)"
    )
    p.add_argument("--after", metavar="RUN", help="start only once RUN has finished")
    p.add_argument(
        "--gpus", type=int, metavar="N",
        help="whole GPUs to take (default: 1 on a GPU machine, 0 for --device cpu)",
    )
    p.add_argument(
        "--gpu-share", type=float, metavar="F",
        help="a share of one GPU (0.5: two such runs share it), to pack small runs",
    )
    p.add_argument(
        "--gpu-mem", metavar="SIZE",
        help="GPU memory the run will need at most (e.g. 20G); default: its parent's peak",
    )
    p.add_argument("--tag", action="append", metavar="TAG",
                   help="tag the new run (again for more tags; 'traintop ls -t TAG' finds it)")


def _add_file_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="an experiment file (TOML: workload, name, device, queue, trials, seed, "
        "[config], [sweep]); values on the command line win over the file's",
    )


def _add_rule_options(p: argparse.ArgumentParser) -> None:
    """What judges a sweep's runs, or forks made together: ASHA or PBT."""
    p.add_argument(
        "--early-stop", type=_count, metavar="GRACE",
        help="stop the runs that fall behind (ASHA): at step GRACE, then every ETA times as "
        "many steps, a run goes on only if among the best 1/ETA of the runs there",
    )
    p.add_argument("--eta", type=_count, metavar="ETA",
                   help=f"with --early-stop: each rung keeps 1/ETA of the runs (default "
                   f"{DEFAULT_ETA})")
    p.add_argument(
        "--pbt", type=_count, metavar="INTERVAL",
        help="population based training: every INTERVAL steps, the worst quarter of the "
        "runs are replaced by forks of the best quarter, their axes perturbed",
    )
    p.add_argument("--pbt-quantile", type=float, metavar="Q",
                   help=f"with --pbt: the share replaced, and copied (default {DEFAULT_QUANTILE})")
    p.add_argument("--pbt-resample", type=float, metavar="P",
                   help="with --pbt: the chance an axis is drawn afresh rather than moved "
                   f"(default {DEFAULT_RESAMPLE})")
    p.add_argument("--stop-metric", metavar="KEY",
                   help="with --early-stop, --pbt or --search: the metric judged (default: "
                   "the training loss)")
    p.add_argument("--stop-mode", choices=MODES,
                   help="with --early-stop, --pbt or --search: which way the metric is "
                   "better (default min)")


def _add_sweep(add: Callable[..., argparse.ArgumentParser]) -> None:
    """``traintop sweep``: its grammar is long enough to stand apart."""
    p = add(
        "sweep",
        _command("sweep_cmd", "cmd_sweep"),
        "start one run per combination: grid axes key=V1,V2 are crossed; random axes "
        "key=log(LO..HI), uniform(LO..HI) or int(LO..HI) are drawn --trials times, each "
        "trial crossed with the whole grid (Ray Tune's num_samples); key=V is fixed",
    )
    p.add_argument("workload", nargs="?")
    p.add_argument("overrides", nargs="*", metavar="key=SPEC")
    _add_file_option(p)
    p.add_argument(
        "--like", action="append", metavar="RUN[,RUN...]",
        help="in place of a workload: each run's workload and config, crossed with the axes "
        "(more seeds of the best settings: --like \"$(traintop ls -G --sort best -n 3 -q)\" "
        "seed=0,1,2,3,4); runs alike one that exists are left out",
    )
    p.add_argument("--trials", type=int, help="how many times to draw the random axes "
                   "(with --search: how many trials in all)")
    p.add_argument(
        "--search", choices=METHODS,
        help="learn where to look (tpe: Optuna's default, W&B's bayes): the first --startup "
        "trials at random, then each next one, made as one ends, from what the ended ones "
        "scored; grid axes are choices, not crossed",
    )
    p.add_argument("--startup", type=_count, metavar="N",
                   help=f"with --search: trials drawn at random first, started together "
                   f"(default {DEFAULT_STARTUP}); with --more: how many at a time from now")
    p.add_argument("--more", metavar="SWEEP",
                   help="go on with a searched sweep: --trials N more trials, learning from "
                   "every one it ran (also after it made all it had, was killed, or stopped "
                   "on failures)")
    p.add_argument("--seed", type=int, help="seed of the draws: same seed, same runs "
                   "(default: 0, or the first seed whose log()/uniform() draws no run of "
                   "the workload has had, said on stderr)")
    p.add_argument("--name", help="the base of the runs' names (default: the workload)")
    p.add_argument("--device", help="cpu, cuda or cuda:N, for every run")
    _add_queue_options(p)
    p.add_argument("--dry-run", action="store_true", help="show the runs; start none")
    p.add_argument(
        "--yes", action="store_true", help=f"allow more than {MAX_SWEEP_RUNS} runs"
    )
    p.add_argument("--json", action="store_true")
    _add_env_options(p)
    _add_divergence_options(p, f"default {DEFAULT_DIVERGENCE_FACTOR:g}")
    _add_fault_options(p, "default none")
    _add_rule_options(p)


def build_parser() -> argparse.ArgumentParser:
    """The ``traintop`` parser: each subcommand sets ``func``, the command that runs it."""
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
        parser.commands[name] = p
        return p

    p = add(
        "start",
        _command("run_actions", "cmd_start"),
        "start a run of a workload (built-in name or file.py:function), or the run or "
        "sweep an experiment file (-f) describes",
    )
    p.add_argument("workload", nargs="?")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    _add_file_option(p)
    p.add_argument("--name")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU with room, else cpu)")
    _add_queue_options(p)
    p.add_argument("--steps", type=int)
    p.add_argument("--text", help="charlm: train on this text file")
    p.add_argument("--no-wait", action="store_true", help="return before the run is training")
    p.add_argument("--json", action="store_true")
    _add_env_options(p)
    _add_divergence_options(p, f"default {DEFAULT_DIVERGENCE_FACTOR:g}")
    _add_fault_options(p, "default none")

    p = add(
        "run",
        _command("run_actions", "cmd_run"),
        "run any command as a run, with metrics read from its output",
    )
    p.add_argument("--name")
    p.add_argument(
        "--loss-pattern",
        metavar="REGEX",
        help="read the loss with this regex (group 'loss' or the first group; group 'step')",
    )
    _add_metric_options(p)
    p.add_argument(
        "--logdir",
        metavar="DIR",
        help="follow the TensorBoard event files the command writes under DIR: exact tags "
        "and steps, which then take the place of what its output says (needs tensorboard)",
    )
    p.add_argument("--no-wait", action="store_true", help="return before the command is up")
    p.add_argument("--json", action="store_true")
    _add_queue_options(p)
    _add_env_options(p)
    _add_divergence_options(p, f"default {DEFAULT_DIVERGENCE_FACTOR:g}")
    p.add_argument(
        "--retries", type=int, metavar="N",
        help="when the command fails, run it again up to N times; it goes on from what it "
        "saved itself, and its points from its first new step on replace the old (default "
        "none)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    p = add(
        "parse",
        _command("parse_cmd", "cmd_parse"),
        "print the metrics 'traintop run' would record from a saved log, to check a "
        "format before a long run",
    )
    p.add_argument("file", metavar="FILE", help="a saved log ('-' for standard input)")
    p.add_argument("--loss-pattern", metavar="REGEX", help="as for 'traintop run'")
    _add_metric_options(p)
    p.add_argument("--stderr", action="store_true", help="read FILE as the command's stderr")
    p.add_argument("--json", action="store_true", help="every point as JSON: [step, name, value]")

    p = add(
        "import",
        _command("import_cmd", "cmd_import"),
        "import TensorBoard logs: each directory of event files under DIR becomes a "
        "finished run with its scalars, steps and wall times (needs tensorboard)",
    )
    p.add_argument("dir", metavar="DIR", help="a TensorBoard log directory")
    p.add_argument("--no-wait", action="store_true",
                   help="return once the runs are written, before the engine has read them")
    p.add_argument("--json", action="store_true")

    _add_sweep(add)

    p = add(
        "diff",
        _command("compare_cmd", "cmd_diff"),
        "the config keys whose values differ between runs",
    )
    p.add_argument("runs", nargs="*", metavar="RUN")
    _add_sweep_option(p, "every run of sweep NAME, a row each")
    p.add_argument("--json", action="store_true")

    p = add(
        "wait",
        _command("compare_cmd", "cmd_wait"),
        "wait until runs finish, fail, are killed or pause; exit 0 if all finished (or "
        "were stopped by their sweep's rule), 1 if any did not, 2 on a timeout or an "
        "unknown run",
    )
    p.add_argument("runs", nargs="*", metavar="RUN")
    _add_sweep_option(p, "every run of sweep NAME, and those that join it while waiting "
                      "(PBT's replacements)")
    p.add_argument("--timeout", type=_seconds, help="seconds to wait at most (default: no limit)")

    p = add(
        "queue",
        _command("queue_cmd", "cmd_queue"),
        "list the queues and the runs waiting in each; with NAME, show that queue, or "
        "create or change it (--parallel, --pause, --resume, --pause-on-failure)",
    )
    p.add_argument("name", nargs="?")
    p.add_argument(
        "--parallel", type=int, metavar="N", help="run at most N runs at once (0: no limit)"
    )
    state = p.add_mutually_exclusive_group()
    state.add_argument("--pause", action="store_true", help="start no more runs from it")
    state.add_argument("--resume", action="store_true", help="start its runs again")
    on_failure = p.add_mutually_exclusive_group()
    on_failure.add_argument(
        "--pause-on-failure", dest="pause_on_failure", action="store_true", default=None,
        help="pause the queue when one of its runs fails",
    )
    on_failure.add_argument(
        "--no-pause-on-failure", dest="pause_on_failure", action="store_false",
    )
    p.add_argument("-n", "--limit", type=_count, metavar="N",
                   help="show only the first N runs waiting in each queue (and how many more)")
    p.add_argument("--json", action="store_true")

    p = add(
        "move",
        _command("queue_cmd", "cmd_move"),
        "move a queued run up, down, to the top or the bottom of its queue",
    )
    p.add_argument("run")
    p.add_argument("to", choices=["up", "down", "top", "bottom"])

    p = add("ls", _command("reads", "cmd_ls"), "list runs, or those that match")
    p.add_argument(
        "words", nargs="*", metavar="WORD", type=_filter_word,
        help="only runs whose id, name, state, workload, device, sweep or tags hold every "
        "WORD (case ignored; the TUI's '/' filter), and of which every condition holds: "
        "KEY=V, KEY!=V, KEY=LOW..HIGH (either end may be left out), or quoted for the "
        "shell 'KEY<V' (also <=, >, >=); KEY as -c names it; a WORD or condition after "
        "'-' leaves out the runs it would keep, after '--' on the line: ls -- -#old -killed",
    )
    p.add_argument("-t", "--tag", action="append", default=[], metavar="TAG",
                   help="only runs tagged TAG (exactly; again for runs with all of them)")
    p.add_argument("--state", type=_states, metavar="STATE[,STATE]",
                   help="only runs in these states; 'live' (not ended) and 'ended' name several")
    p.add_argument("--sweep", metavar="NAME", help="only the runs of this sweep")
    p.add_argument("--since", type=_since, metavar="WHEN",
                   help="only runs made since WHEN: 90m, 2h, 3d, 1w back, or a date "
                   "(2026-11-20, 2026-11-20T14:30)")
    p.add_argument("-c", "--columns", type=_names, action="extend", default=[],
                   metavar="KEY[,KEY]",
                   help="a column for each KEY: a config key, else a metric (its latest "
                   "value), min:KEY or max:KEY (a metric's lowest or highest so far)")
    p.add_argument("--sort", default="created", metavar="COLUMN",
                   help=f"order by this column ({' '.join(RUN_SORTS)}) or KEY as -c names "
                   "it, ascending (runs without a value last); default: creation order")
    p.add_argument("-r", "--reverse", action="store_true", help="the other way round")
    p.add_argument("--size", action="store_true",
                   help="a SIZE column: what each run's files (checkpoints, spool, logs) take "
                   "on disk, and their total ('--sort size -r': the largest first)")
    p.add_argument("-n", "--limit", type=_count, metavar="N",
                   help="only N runs: the newest N, or the first N of --sort's order")
    p.add_argument("-G", "--settings", action="store_true",
                   help="one row a setting: the runs alike but for their seeds (config keys "
                   "ending in 'seed'), how many and in which states, with the mean ± sd of "
                   "LOSS, BEST and each -c number; --sort by such a mean (or 'runs'), -n "
                   "settings, -q a line of ids a setting (the TUI's G draws them as one)")
    p.add_argument("--sweeps", action="store_true",
                   help="one row a sweep: its runs by state, its best run and loss, its rule "
                   "and queue, when it was made; --sort created, name, runs or best; -q "
                   "their names")
    p.add_argument("--corr", action="store_true",
                   help="which settings go with a lower loss: for each numeric config key "
                   "that differs between the runs listed, Spearman's rank correlation with "
                   "their best loss, the strongest first (--json too)")
    p.add_argument("--by", type=_names, action="extend", default=[], metavar="KEY[,KEY]",
                   help="-G by these config keys: runs alike in them are one setting, "
                   "whatever else differs (W&B's group by)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("-q", "--quiet", action="store_true", help="only their ids, one a line")
    shape.add_argument("--json", action="store_true")

    p = add(
        "tag", _command("annotate_cmd", "cmd_tag"),
        "tag runs with a word ('traintop ls -t TAG' lists them, the TUI shows it); "
        "-d takes the tag off",
    )
    p.add_argument("tag", metavar="TAG")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("-d", "--delete", action="store_true", help="take TAG off the runs")

    p = add(
        "note", _command("annotate_cmd", "cmd_note"),
        "print a run's note, or with TEXT set it ('' clears it); show and the TUI's "
        "details show it",
    )
    p.add_argument("run")
    p.add_argument("text", nargs="?", metavar="TEXT")

    p = add("show", _command("reads", "cmd_show"), "show one run: config, lineage, events, exit")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")

    p = add("pause", _command("run_actions", "cmd_pause"),
            "pause runs at their next step")
    p.add_argument("runs", nargs="*", metavar="RUN")
    _add_sweep_option(p, "every run of sweep NAME that is training (its queued ones wait "
                      "on while their slots are held; --release frees them)")
    p.add_argument(
        "--release",
        action="store_true",
        help="checkpoint and end the worker, freeing its (GPU) memory",
    )
    p.add_argument("--timeout", type=_seconds, default=10.0)

    p = add("resume", _command("run_actions", "cmd_resume"), "resume paused (or failed) runs")
    p.add_argument("runs", nargs="*", metavar="RUN")
    _add_sweep_option(p, "every paused run of sweep NAME")
    p.add_argument("--timeout", type=_seconds, default=30.0)

    p = add(
        "fork",
        _command("run_actions", "cmd_fork"),
        "fork a run at its current step, with config overrides; a list (lr=1e-4,3e-4) "
        "or a random axis with --trials makes one fork per value, all from one checkpoint",
    )
    p.add_argument("run")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--name", help="the fork's name; of several forks, what their names "
                   "and group start with (default: the parent's name)")
    p.add_argument("--device")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--trials", type=int, help="how many times to draw the random axes")
    p.add_argument("--seed", type=int, help="seed of the draws (default 0)")
    p.add_argument(
        "--yes", action="store_true", help=f"allow more than {MAX_SWEEP_RUNS} forks"
    )
    _add_queue_options(p)
    _add_rule_options(p)  # for forks made together: ASHA counts from the fork step
    _add_divergence_options(p, "default: the parent's")
    _add_fault_options(p, "default: the parent's")

    p = add(
        "restart",
        _command("restart_cmd", "cmd_restart"),
        "start a new run doing what RUN did (any state), from the start: same workload, "
        "config, device and directory, or the same command; named NAME-r2, -r3...",
    )
    p.add_argument("run")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--name")
    p.add_argument("--device", help="instead of the run's own")
    p.add_argument("--no-wait", action="store_true", help="return before the run is training")
    p.add_argument("--json", action="store_true")
    _add_queue_options(p)
    _add_env_options(p)
    _add_divergence_options(p, "default: the run's own")
    _add_fault_options(p, "default: the run's own")

    p = add(
        "kill",
        _command("run_actions", "cmd_kill"),
        "stop runs: SIGTERM, then SIGKILL after a grace period "
        "(a wrapped command gets SIGINT first, then SIGTERM after the grace period)",
    )
    p.add_argument("runs", nargs="*", metavar="RUN")
    _add_sweep_option(p, "every run of sweep NAME that has not ended, queued ones too, "
                      "and any trial its search makes meanwhile")
    p.add_argument(
        "--grace", type=_seconds, default=DEFAULT_KILL_GRACE, help="seconds before SIGKILL"
    )

    p = add(
        "rm",
        _command("run_actions", "cmd_rm"),
        "remove ended runs for good: their metrics, events, logs and checkpoints "
        "(kill a run first); forks of a removed run keep their own",
    )
    p.add_argument("runs", nargs="*", metavar="RUN")
    _add_sweep_option(p, "every run of sweep NAME that has ended (with -f, all of them)")
    p.add_argument(
        "-n", "--dry-run", action="store_true",
        help="say what would be removed and the disk it would free; remove nothing",
    )
    p.add_argument(
        "-f", "--force", action="store_true",
        help="kill the runs that have not ended first (as 'traintop kill'), then remove them",
    )
    p.add_argument(
        "-c", "--checkpoints", action="store_true",
        help="remove only their checkpoints (most of their disk) and keep the runs: points, "
        "events and logs; they can no longer be forked or resumed (restart still works); "
        "a checkpoint a fork that has not ended goes on from is kept",
    )

    p = add("logs", _command("reads", "cmd_logs"), "print a run's output")
    p.add_argument("run")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--stderr", action="store_true")
    p.add_argument("--bytes", type=_size, default=64 * 1024, help="how much of the end to show")

    p = add("export", _command("export_cmd", "cmd_export"), "export the metrics of runs")
    p.add_argument("runs", nargs="*", metavar="run", help="runs by id, prefix or name")
    _add_sweep_option(p, "every run of sweep NAME, in the order made")
    p.add_argument(
        "--format", choices=["csv", "json", "jsonl"],
        help="csv: a row a point (run,step,key,value,time); json: an object a run (an "
        "array for several); jsonl: an object a line (default: as -o's name ends, .csv, "
        ".json, .jsonl or .ndjson; else csv)",
    )
    p.add_argument(
        "-k", "--key", dest="keys", action="append", default=[], metavar="KEY",
        help="only this metric (again, or KEY,KEY, for more)",
    )
    p.add_argument("-o", "--output", help="write to this file, once the export is whole")

    p = add("gpu", _command("reads", "cmd_gpu"), "current GPU figures and which runs use each GPU")
    p.add_argument("--json", action="store_true")

    p = add("top", _command("reads", "cmd_top"), "current host, GPU and per-run resource use")
    p.add_argument("--json", action="store_true")

    add(
        "demo",
        _command("run_actions", "cmd_demo"),
        "start demo charlm runs (and a fork); in a terminal, open the TUI",
    )

    p = add(
        "engine",
        _command("engine_cmd", "cmd_engine"),
        "start, stop or inspect the engine daemon; 'rebuild' makes a new store from the run "
        "directories (the engine stopped), keeping the old one aside; 'compact' gives the "
        "disk back the room of removed runs' points (the engine stopped)",
    )
    p.add_argument("action", choices=["start", "stop", "status", "rebuild", "compact"])
    p.add_argument("--json", action="store_true")
    return parser


def take_overrides(
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
        keys = [word.partition("=")[0].strip() for word in args.overrides if "=" in word]
        twice = next((key for key in keys if keys.count(key) > 1), None)
        if twice is not None:  # 'lr=0.1 lr=0.2': which one was meant is not for us to guess
            given = ", ".join(w for w in args.overrides if w.partition("=")[0].strip() == twice)
            parser.error(f"{twice} is given twice ({given}); give it once")
    if extras and isinstance(getattr(args, "words", None), list):
        leave_out = [word for word in extras if not word.startswith("--")]
        if leave_out:  # 'ls -#old': argparse takes it for an option
            parser.error(f"unrecognized arguments: {' '.join(extras)}; a word that leaves "
                         f"runs out goes after '--': traintop ls -- {' '.join(leave_out)}")
    if extras:
        if isinstance(parser, _Parser):
            parser.unknown_words(args.command, extras)
        parser.error(f"unrecognized arguments: {' '.join(extras)}")

