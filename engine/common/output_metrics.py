"""Metrics read from a wrapped command's output lines (``traintop run -- CMD``).

``output_lines`` reads one line (names, values, step hints); this module keeps what spans
lines and decides what is recorded.

What becomes a metric:

- ``key=value`` and ``key: value`` for any name; ``key value`` for metric-like names
  (``loss``, ``acc``, ``ppl``, ``lr``...); JSON objects and printed Python dicts; tables
  whose header row names the columns (YOLO). Names are qualified by the words around them
  (``val loss`` is ``val/loss``, see ``output_lines``); every metric on a line is recorded.
- Only from progress lines: a line with a loss-like field (loss, acc, ppl...) or a step,
  or with the same names as an earlier progress line. Config echoes (``batch_size = 64``),
  argument dumps and warnings are not progress. On stderr only progress bars count
  (tqdm and Lightning draw there), unless a pattern matches.
- ``--loss-pattern`` and ``--metric NAME=REGEX`` always count, on either stream; the text
  they match yields nothing else. ``only_patterns`` turns everything else off.

Steps come from the script: ``step N``, ``iter N``, ``num_updates=N``; ``N/M batches``,
tqdm's and Keras's ``N/M [``, MNIST's ``[N/M (p%)]`` inside ``epoch E`` as
``(E - E0) * M + N`` (``E0`` the first epoch seen, so 0- and 1-based both start at 0);
``[E, N]`` with no ``M`` as N past the last step of epoch E-1; a bar with no epoch as N
past the bars before it; ``epoch E`` alone as step E while the output names nothing finer.
A line without a step belongs to the last step seen; the step
never goes backwards; only output that never names a step is counted in lines. Progress bars
redrawn with ``\\r`` are read at every redraw, but a redraw with the same values adds nothing,
and a value already recorded at a step is not recorded there again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from engine.common.output_lines import ANSI, LineReading, is_loss_like, read_line

# (step, key, value)
Point = tuple[int, str, float]

_BAR = re.compile(r"\d+%\|")  # a tqdm/Lightning progress bar
_HEADER_CUT = re.compile(r":\s+\d+%\|.*$")  # a YOLO header or row ends in its own bar
_HEADER_TOKEN = re.compile(r"[A-Za-z][\w()./-]*:?")
# A Keras bar (``313/313 [=====]`` or Keras 3's ``313/313 ━━━━``): its total is the epoch's.
_KERAS_BAR = re.compile(r"\s*\d+/(?P<total>\d+)\s*(?:\[[=.>]*\]|\u2501+)")


class PatternError(ValueError):
    """A loss or metric pattern that is not usable."""


def compile_loss_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """The compiled ``--loss-pattern``, or PatternError with a one-line reason."""
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise PatternError(f"--loss-pattern {pattern!r} is not a valid regex: {exc}") from None


def compile_metric_patterns(specs: Iterable[str]) -> list[tuple[str, re.Pattern[str]]]:
    """``--metric NAME=REGEX`` options as (name, regex); PatternError with a one-line reason."""
    compiled: list[tuple[str, re.Pattern[str]]] = []
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        if not sep or not name.strip() or not pattern:
            raise PatternError(f"--metric {spec!r} must be NAME=REGEX")
        try:
            compiled.append((name.strip(), re.compile(pattern)))
        except re.error as exc:
            raise PatternError(f"--metric {spec!r} is not a valid regex: {exc}") from None
    return compiled


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _pattern_value(match: re.Match[str], name: str) -> float | None:
    """The group named ``name`` (or ``value``), else the first group that is not the step,
    else the whole match."""
    groups: dict[str, Any] = match.groupdict()
    for group in (name, "value"):
        if groups.get(group) is not None:
            return _number(groups[group])
    step_index = match.re.groupindex.get("step")
    for index in range(1, match.re.groups + 1):
        if index != step_index:
            return _number(match.group(index))
    return _number(match.group(0))


class MetricParser:
    """Turns output text, fed in arbitrary chunks per stream, into metric points."""

    def __init__(
        self,
        loss_pattern: str | None = None,
        metric_patterns: Iterable[str] = (),
        only_patterns: bool = False,
    ) -> None:
        self.patterns = compile_metric_patterns(metric_patterns)
        loss = compile_loss_pattern(loss_pattern)
        if loss is not None:
            self.patterns.insert(0, ("loss", loss))
        self.only_patterns = only_patterns
        self._partial: dict[str, str] = {}
        self._previous: dict[str, dict[str, float]] = {}
        self._headers: dict[str, list[str]] = {}
        self._shapes: set[frozenset[str]] = set()
        self._recorded: dict[str, tuple[int, float]] = {}
        self._last_step: int | None = None
        # The first step the output named (None while it names none: lines are counted).
        self.first_named: int | None = None
        self._counted = 0
        self._floor = 0  # the highest step given so far: no point goes below it
        self._finer = False  # a step or a position within an epoch was seen
        self._epoch: int | None = None
        self._first_epoch: int | None = None
        self._epoch_start: dict[int, int] = {}
        self._keras_total: int | None = None  # the bar length of the current Keras epoch
        self._bar: tuple[int, int] | None = None
        self._bar_offset = 0

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
        line = ANSI.sub("", raw)
        if not line.strip():
            return []
        found, step, rest = self._patterns(line)
        reading = read_line(rest)
        if not reading.metrics and not found:
            self._table(rest, stream, reading)
        if reading.epoch is not None:
            self._enter_epoch(reading.epoch)
        self._keras_evaluation(line, reading)
        heuristic = not self.only_patterns and (stream != "stderr" or _BAR.search(line))
        if heuristic and self._is_progress(reading):
            # A name a pattern gives comes from that pattern only.
            owned = {name for name, _ in self.patterns}
            found = {**{k: v for k, v in reading.metrics.items() if k not in owned}, **found}
        if step is None:
            step = reading.step if reading.step is not None else self._position(reading, found)
        if step is not None:
            self._finer = True
        elif found and reading.epoch is not None and not self._finer:
            step = reading.epoch  # "Epoch 3 | loss 0.5": the epoch is the only step there is
        if not found:
            if step is not None and reading.step is not None:
                self._named(step)
            return []
        if reading.step is None and self._previous.get(stream) == found:
            return []  # a progress bar redrawn without new values
        self._previous[stream] = dict(found)
        at = self._resolve(step)
        points: list[Point] = []
        for key, value in found.items():
            # A bar that carries the last validation loss along repeats it at every redraw.
            if self._recorded.get(key) != (at, value):
                self._recorded[key] = (at, value)
                points.append((at, key, value))
        return points

    def _patterns(self, line: str) -> tuple[dict[str, float], int | None, str]:
        """What the explicit patterns give, their step, and the line without their text."""
        found: dict[str, float] = {}
        step: int | None = None
        rest = line
        for name, pattern in self.patterns:
            match = pattern.search(rest)
            if match is None:
                continue
            value = _pattern_value(match, name)
            if value is not None:
                found[name] = value
            given = match.groupdict().get("step")
            if given is not None and given.isdigit() and step is None:
                step = int(given)
            # The text a pattern matched is its own: "objective=0.4" is no "objective".
            rest = f"{rest[: match.start()]} {rest[match.end() :]}"
        return found, step, rest

    def _is_progress(self, reading: LineReading) -> bool:
        if reading.echo or not reading.metrics:
            return False
        shape = frozenset(reading.metrics)
        if reading.progress:
            self._shapes.add(shape)
            return True
        return shape in self._shapes

    def _table(self, line: str, stream: str, reading: LineReading) -> None:
        """A YOLO-style header (names only, one loss-like) or a row under the last one."""
        head = _HEADER_CUT.sub("", line).split()
        header = self._headers.get(stream)
        if len(head) >= 3 and all(_HEADER_TOKEN.fullmatch(t) for t in head):
            names = [t.strip(":)").rpartition("(")[2].lower() for t in head]
            if any(is_loss_like(n) for n in names):
                self._headers[stream] = names
                return
        if header is None or len(head) != len(header):
            self._headers.pop(stream, None)
            return
        for name, cell in zip(header, head, strict=True):
            epoch = re.fullmatch(r"(\d+)/\d+", cell)
            if name == "epoch" and epoch:
                reading.epoch = int(epoch[1])
            elif is_loss_like(name) and _number(cell) is not None:
                reading.metrics[name] = float(cell)
        reading.progress = bool(reading.metrics)

    def _keras_evaluation(self, line: str, reading: LineReading) -> None:
        """A Keras bar of another length than its epoch's, with no epoch line of its own, is
        ``model.evaluate`` after training: its names are scoped ``test/`` and it has no
        position of its own (it belongs to the last training step)."""
        bar = _KERAS_BAR.match(line)
        if bar is None or self._epoch is None:
            return
        total = int(bar["total"])
        if self._keras_total is None:
            self._keras_total = total
        elif total != self._keras_total and reading.metrics:
            reading.metrics = {
                k if "/" in k else f"test/{k}": v for k, v in reading.metrics.items()
            }
            reading.position = None

    def _enter_epoch(self, epoch: int) -> None:
        if self._first_epoch is None:
            self._first_epoch = epoch
        if epoch not in self._epoch_start:
            self._epoch_start[epoch] = 0 if epoch == self._first_epoch else self._last_step or 0
        if epoch != self._epoch:
            self._keras_total = None
        self._epoch = epoch

    def _position(self, reading: LineReading, found: dict[str, float]) -> int | None:
        """The global step of an N/M or [E, N] position; None without one or any metric."""
        if reading.position is None or not found:
            return None  # a validation bar between epochs places nothing
        epoch, n, total = reading.position
        epoch = epoch if epoch is not None else self._epoch
        if epoch is not None and self._first_epoch is not None:
            if total is not None:
                return (epoch - self._first_epoch) * total + n
            return self._epoch_start.get(epoch, 0) + n
        if total is None:
            return n
        if self._bar is not None and n < self._bar[0]:
            self._bar_offset += self._bar[1]  # a new bar: it counts on from the last
        self._bar = (n, total)
        return self._bar_offset + n

    def _named(self, step: int) -> int:
        """A step the output names: the last one from now on (never below one before)."""
        self._last_step = self._floor = max(step, self._floor)
        if self.first_named is None:
            self.first_named = self._last_step
        return self._last_step

    def _resolve(self, step: int | None) -> int:
        """The global step: the line's own (never below one given before), the last, or a
        count of lines."""
        if step is not None:
            return self._named(step)
        if self._last_step is None:
            self._floor = self._counted
            self._counted += 1
            return self._floor
        return self._last_step
