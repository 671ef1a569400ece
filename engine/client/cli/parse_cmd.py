"""``traintop parse FILE``: what ``traintop run`` would record from a saved log.

It reads the file through the same parser the shim uses, so a user can check the names,
steps and values of their script's format before a long run. No engine is needed.
"""

from __future__ import annotations

import argparse
import codecs
import sys
from typing import BinaryIO

from engine.client.cli.common import UsageError
from engine.common.format import format_table, json_text
from engine.common.output_metrics import MetricParser, PatternError

_CHUNK = 1 << 16


def _parser(args: argparse.Namespace) -> MetricParser:
    if args.only_patterns and args.loss_pattern is None and not args.metric:
        raise UsageError("--only-patterns needs --metric NAME=REGEX or --loss-pattern")
    try:
        return MetricParser(args.loss_pattern, args.metric, args.only_patterns)
    except PatternError as exc:
        raise UsageError(str(exc)) from None


def _open(path: str) -> BinaryIO:
    """The log, or standard input for ``-``."""
    if path == "-":
        return open(sys.stdin.fileno(), "rb", closefd=False)
    return open(path, "rb")


def _series(args: argparse.Namespace, parser: MetricParser) -> dict[str, list[list[float]]]:
    """Every point of the log, grouped into series in the order they were logged."""
    stream = "stderr" if args.stderr else "stdout"
    series: dict[str, list[list[float]]] = {}
    # Decoded as the shim does: a character split across two reads is read whole, a bad
    # byte is replaced rather than fatal.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        with _open(args.file) as f:
            while chunk := f.read(_CHUNK):
                for step, key, value in parser.feed(decoder.decode(chunk), stream):
                    series.setdefault(key, []).append([step, value])
    except OSError as exc:
        raise UsageError(f"{args.file}: {exc.strerror or exc}") from None
    tail = parser.feed(decoder.decode(b"", final=True), stream) + parser.finish()
    for step, key, value in tail:
        series.setdefault(key, []).append([step, value])
    return series


def cmd_parse(args: argparse.Namespace) -> int:
    """Print each series the log gives (points, steps, first and last value), or all as JSON."""
    series = _series(args, _parser(args))
    if args.json:
        print(json_text({"series": series}))
        return 0
    if not series:
        print("no metrics: no line looks like training progress (try --metric NAME=REGEX)")
        return 0
    rows = [
        [name, str(len(points)), f"{points[0][0]:g}..{points[-1][0]:g}",
         f"{points[0][1]:g}", f"{points[-1][1]:g}"]
        for name, points in series.items()
    ]
    print(format_table(["SERIES", "POINTS", "STEPS", "FIRST", "LAST"], rows))
    return 0
