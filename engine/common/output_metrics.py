"""Metrics read from a wrapped command's output lines (``traintop run -- CMD``).

What counts as a metric, so that the rules can be checked against a line:

- ``key=value`` and ``key: value`` for any name (``Loss=0.5``, ``'loss': 0.5``,
  ``train/acc: 91.2``, tqdm postfixes ``loss=0.123``); names are lower-cased.
- ``key value`` (only a space between) for metric-like names: anything with
  ``loss``, ``acc``, ``ppl`` or ``perplexity`` in it, and ``lr``,
  ``learning_rate``, ``grad_norm``, ``epoch``, ``step``, ``iter``. So
  ``step 100 loss 7.61 lr 3e-4`` gives ``loss`` and ``lr``, but ``Using 4 GPUs``
  gives nothing.
- A number glued to a name is part of the name: ``saved ckpt_loss_0.5.pt`` and
  ``run_loss3`` give nothing. A counter ``N/M`` is no value: ``epoch 3/10`` gives
  nothing (``step 20/100`` still gives step 20).
- A line that is a JSON object: each number in it (``{"step": 5, "loss": 0.3}``).
- ``tensor(0.51, grad_fn=...)`` reads as 0.51 (a printed torch scalar).

The step is the line's own ``step``/``iter``/``iteration``/``global_step`` when
it has one; a line without one belongs to the last step seen, or, when the
output never names a step, to a counter that goes up by one per line with
metrics. Progress bars redrawn with ``\\r`` are parsed at every redraw (so the
chart moves while the bar does), but a redraw whose values equal the previous
one is skipped: a bar that refreshes its rate without a new loss adds nothing.

With a loss pattern (a regex), ``loss`` comes only from it: its group named
``loss`` (else its first group, else the whole match) is the value, a group
named ``step`` the step; the text it matched yields no other metric.
"""

from __future__ import annotations

import json
import re
from typing import Any

# (step, key, value)
Point = tuple[int, str, float]

STEP_KEYS = frozenset({"step", "global_step", "iter", "iteration"})
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
# A name not glued to anything before it; a separator; a number not glued to
# anything after it (no letter, no further digits, no "/M" counter).
_PAIR = re.compile(
    rf"""(?<![\w./-])['"]?(?P<key>[A-Za-z][\w./-]*?)['"]?
        (?P<sep>\s*[:=]\s*|\s+)
        (?:tensor\()?(?P<value>{_NUMBER})(?P<counter>/\d+)?(?!\w|\.\d|/\d)""",
    re.VERBOSE | re.IGNORECASE,
)
_SPACED_KEY = re.compile(
    r".*(loss|acc|ppl|perplexity).*|lr|learning_rate|grad_norm|epoch|step|global_step|iter"
    r"|iteration",
)


class PatternError(ValueError):
    """A loss pattern that is not a usable regular expression."""


def compile_loss_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """The compiled ``--loss-pattern``, or PatternError with a one-line reason."""
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise PatternError(f"--loss-pattern {pattern!r} is not a valid regex: {exc}") from None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_pairs(line: str) -> tuple[int | None, dict[str, float]]:
    """The step (if the line names one) and the metrics of one line."""
    stripped = line.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        parsed = _parse_json(stripped)
        if parsed is not None:
            return parsed
    step: int | None = None
    metrics: dict[str, float] = {}
    for match in _PAIR.finditer(line):
        key = match["key"].lower()
        spaced = not match["sep"].strip()
        if spaced and not _SPACED_KEY.fullmatch(key):
            continue
        value = _number(match["value"])
        if value is None:
            continue
        if key in STEP_KEYS:
            if value.is_integer() and step is None:
                step = int(value)
        elif match["counter"] is None:
            metrics[key] = value
    return step, metrics


def _parse_json(text: str) -> tuple[int | None, dict[str, float]] | None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    step: int | None = None
    metrics: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        name = str(key).lower()
        if name in STEP_KEYS and isinstance(value, int):
            step = step if step is not None else value
        elif name not in STEP_KEYS:
            metrics[name] = float(value)
    return step, metrics


class MetricParser:
    """Turns output text, fed in arbitrary chunks per stream, into metric points."""

    def __init__(self, loss_pattern: str | None = None) -> None:
        self.loss_pattern = compile_loss_pattern(loss_pattern)
        self._partial: dict[str, str] = {}
        self._previous: dict[str, tuple[int | None, dict[str, float]]] = {}
        self._last_step: int | None = None
        self._counted = 0
        self._saw_step = False

    def feed(self, text: str, stream: str = "stdout") -> list[Point]:
        """Points from every line (or ``\\r`` redraw) that ``text`` completes."""
        buffered = self._partial.get(stream, "") + text
        segments = re.split(r"\r\n|\r|\n", buffered)
        self._partial[stream] = segments.pop()
        if len(self._partial[stream]) > 65536:  # no newline for 64 KiB: not a line
            self._partial[stream] = ""
        points: list[Point] = []
        for segment in segments:
            points.extend(self._line(segment, stream))
        return points

    def finish(self) -> list[Point]:
        """Points of the last unterminated line of every stream (at end of output)."""
        points: list[Point] = []
        for stream in list(self._partial):
            points.extend(self._line(self._partial.pop(stream), stream))
        return points

    def _line(self, raw: str, stream: str) -> list[Point]:
        line = _ANSI.sub("", raw)
        if not line.strip():
            return []
        match = self.loss_pattern.search(line) if self.loss_pattern is not None else None
        # The text the pattern matched is its own: "objective=0.4" is the loss, not "objective".
        rest = line if match is None else f"{line[: match.start()]} {line[match.end() :]}"
        step, metrics = parse_pairs(rest)
        if self.loss_pattern is not None:
            metrics.pop("loss", None)
        if match is not None:
            step = self._pattern_step(match, step)
            value = _pattern_value(match)
            if value is not None:
                metrics["loss"] = value
        if not metrics:
            if step is not None:
                self._saw_step, self._last_step = True, step
            return []
        if self._previous.get(stream) == (step, metrics):
            return []  # a progress bar redrawn without new values
        self._previous[stream] = (step, dict(metrics))
        if step is not None:
            self._saw_step, self._last_step = True, step
        elif self._saw_step and self._last_step is not None:
            step = self._last_step
        else:
            step = self._counted
            self._counted += 1
        return [(step, key, value) for key, value in metrics.items()]

    @staticmethod
    def _pattern_step(match: re.Match[str], step: int | None) -> int | None:
        found = match.groupdict().get("step")
        if found is not None and found.isdigit():
            return int(found)
        return step


def _pattern_value(match: re.Match[str]) -> float | None:
    groups: dict[str, Any] = match.groupdict()
    if groups.get("loss") is not None:
        text = groups["loss"]
    elif match.re.groups:
        text = match.group(1)
    else:
        text = match.group(0)
    return _number(text) if text is not None else None
