"""Which runs a listing shows, and in what order.

``traintop ls`` and the TUI's runs table share these rules, so a filter typed in
one finds the same runs in the other: every word must occur in the run's id,
name, state, workload, device, sweep or tags (case ignored), every condition
(``lr<1e-3``, ``batch=64``, ``lr=1e-4..1e-3``) must hold of one of its values, a word
or condition after ``-`` leaves out the runs it would keep (``-#old``, ``-killed``,
``-lr<1e-3``), and a sort puts runs without a value last whichever way it goes.

A value is named as ``ls -c``, ``ls --sort`` and conditions name it: a config key,
else a metric (its latest value), ``min:KEY`` / ``max:KEY`` (a metric's lowest or
highest value so far), else a column of the table (``step``, ``loss``, ``best``...).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from engine.client.events import RunInfo
from engine.common.format import format_number, shown
from engine.common.runs import RunState

T = TypeVar("T")

STATE_ORDER = tuple(state.value for state in RunState)  # the life of a run
# Words for several states at once, besides the states themselves.
STATE_GROUPS: Mapping[str, tuple[str, ...]] = {
    "live": tuple(s.value for s in RunState if not s.terminal),
    "ended": tuple(s.value for s in RunState if s.terminal),
}


def parse_states(text: str) -> frozenset[str]:
    """The states named by ``running,paused`` (or ``live``, ``ended``); ValueError, in
    words, for a name that is neither."""
    states: set[str] = set()
    for word in filter(None, (w.strip().lower() for w in text.split(","))):
        if word in STATE_GROUPS:
            states.update(STATE_GROUPS[word])
        elif word in STATE_ORDER:
            states.add(word)
        else:
            known = ", ".join((*STATE_ORDER, *STATE_GROUPS))
            raise ValueError(f"no state '{word}': one of {known}")
    if not states:
        raise ValueError("no state named: give one of " + ", ".join(STATE_ORDER))
    return frozenset(states)


# The units of ``--since 90m``, in seconds.
_SPANS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float) -> float:
    """The time ``--since`` names: a span back from ``now`` (``90m``, ``2h``, ``3d``,
    ``1w``) or a local date and time (``2026-11-20``, ``2026-11-20T14:30``); ValueError,
    in words, for anything else."""
    word = text.strip().lower()
    if word[:-1].replace(".", "", 1).isdigit() and word[-1:] in _SPANS:
        return now - float(word[:-1]) * _SPANS[word[-1]]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (a span back from now such as 90m, 2h, 3d or 1w, "
            "or a date such as 2026-11-20 or 2026-11-20T14:30)"
        ) from None


def run_text(run: RunInfo) -> str:
    """What a filter looks in: id, name, state, workload, device, sweep and tags (as the
    table shows them, ``#best``, so either form is found), lower case."""
    return " ".join((run.id, run.name, run.state, run.workload, str(run.device),
                     run.sweep or "", *("#" + tag for tag in run.tags))).lower()


def has_words(text: str, words: Sequence[str]) -> bool:
    """Whether every one of ``words`` (lower case) occurs in ``text`` (lower case)."""
    return all(word in text for word in words)


def finite(value: Any) -> float | None:
    """A number to sort by, or None for a missing, non-numeric, NaN or infinite value."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# How each column of a run orders the runs (ascending); None sorts last.
RUN_SORTS: Mapping[str, Callable[[RunInfo], Any]] = {
    "id": lambda r: r.id,
    "name": lambda r: r.name.lower(),
    "state": lambda r: STATE_ORDER.index(r.state) if r.state in STATE_ORDER else None,
    "step": lambda r: r.step,
    "loss": lambda r: finite(r.last.get(r.loss_key)),
    "best": lambda r: finite(r.best.get(r.loss_key)),
    "device": lambda r: r.device or "",
    "size": lambda r: r.size,  # (only a listing with sizes has it: 'ls --size')
}


def sort_keyless_last(
    items: Iterable[T], key: Callable[[T], Any], descending: bool = False
) -> list[T]:
    """``items`` sorted by ``key`` (stable: ties keep their order), those whose key is
    None at the end in their own order, whichever the direction."""
    keyed = [(key(item), item) for item in items]
    present = [pair for pair in keyed if pair[0] is not None]
    present.sort(key=lambda pair: pair[0], reverse=descending)
    return [item for _, item in present] + [item for k, item in keyed if k is None]


def ordered(items: list[T], key: Callable[[T], Any], sort: str, descending: bool,
            limit: int | None) -> list[T]:
    """``items`` (in creation order) as ``ls`` lists them: by ``key`` unless ``sort`` is
    "created" (``descending``: the other way), then cut to ``limit``: the first of a sort,
    or the newest (still oldest first) in creation order."""
    if sort != "created":
        items = sort_keyless_last(items, key, descending)
    elif descending:
        items = items[::-1]
    elif limit:
        return items[-limit:]
    return items[:limit] if limit else items


# The run's own columns a value name falls back to (after its config and metrics).
RUN_COLUMNS: Mapping[str, Callable[[RunInfo], Any]] = {
    "id": lambda r: r.id,
    "name": lambda r: r.name,
    "state": lambda r: r.state,
    "step": lambda r: r.step,
    "loss": lambda r: r.last.get(r.loss_key),
    "best": lambda r: r.best.get(r.loss_key),
    "workload": lambda r: r.workload,
    "device": lambda r: r.device,
    "sweep": lambda r: r.sweep,
    "queue": lambda r: r.queue,
    "size": lambda r: r.size,
}
EXTREMES = ("min", "max")  # min:KEY, max:KEY


def run_value(run: RunInfo, name: str) -> Any:
    """The value ``name`` picks of ``run`` (see the module's text); None: it has none."""
    prefix, colon, key = name.partition(":")
    if colon and prefix in EXTREMES:
        return (run.best if prefix == "min" else run.highest).get(key)
    if name in run.config:
        return run.config[name]
    if name in run.last:
        return run.last[name]
    column = RUN_COLUMNS.get(name)
    return column(run) if column is not None else None


def unknown_value(runs: Collection[RunInfo], name: str) -> str | None:
    """Why ``name`` names nothing, with the closest names (no run has a value by it, and
    it is no column); None: it names something."""
    if name in RUN_COLUMNS or any(run_value(r, name) is not None for r in runs):
        return None
    prefix, colon, key = name.rpartition(":")
    if colon and prefix in EXTREMES and any(key in r.last for r in runs):
        return None  # a metric whose extremes have yet to come (the TUI's, at its start)
    keys = {k for r in runs for k in (*r.config, *r.last)} | set(RUN_COLUMNS)
    close = [prefix + colon + k for k in difflib.get_close_matches(key, keys, n=3)]
    hint = f"; did you mean {', '.join(close)}?" if close else (
        "; a config key, a metric, min:KEY or max:KEY of a metric, or a column "
        f"({' '.join(RUN_COLUMNS)})")
    return f"no run has a value named {shown(name)!r}{hint}"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


SHOWN_VALUE = 30  # a value in a column of its own (a list, a path...) is cut to this


def value_text(value: Any) -> str:
    """A value in a column of its own (``ls -c``, the TUI's ``a``): a number in at most ~7
    characters, ``-`` for none, a word cut to ``SHOWN_VALUE``."""
    return format_number(value) if value is None or is_number(value) else shown(
        str(value), SHOWN_VALUE)


def value_order(value: Any) -> Any:
    """How a value sorts: numbers by size, before anything else by its text; None (and
    NaN, which has no place) stays None, to go last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return (0, value, "") if is_number(value) else (1, 0, str(value).lower())


# KEY OP VALUE. Keys may hold what metric names do ('train/loss', 'min:val_loss').
_CONDITION = re.compile(r"([A-Za-z_][\w./:-]*?)(<=|>=|!=|==|=|<|>)(.*)", re.DOTALL)


@dataclass(frozen=True)
class Condition:
    """``name op value``, or ``name=lo..hi`` (both ends included, either may be left out)."""

    name: str
    op: str  # '=', '!=', '<', '<=', '>', '>=' or '..'
    number: float | None  # the value as a number, when it is one
    text: str  # the value as typed
    low: float = -math.inf  # the range's ends ('..')
    high: float = math.inf
    negated: bool = False  # typed after '-': it holds where the condition does not

    def holds(self, run: RunInfo) -> bool:
        """Whether ``run``'s value satisfies it; a run without the value (or with NaN)
        never does (and always does a negated one)."""
        return self._satisfied(run) != self.negated

    def _satisfied(self, run: RunInfo) -> bool:
        value = run_value(run, self.name)
        if value is None:
            return False
        if is_number(value):
            value = float(value)
            if math.isnan(value):
                return False
            if self.op == "..":
                return self.low <= value <= self.high
            if self.number is not None:
                return _compare(value, self.op, self.number)
        if self.op in ("=", "!="):
            return _word_equal(str(value), self.text) == (self.op == "=")
        return False  # an order between a number and a word, or two words: none


def _word_equal(value: str, text: str) -> bool:
    """Whether ``value`` is the word ``text``, case ignored; a ``*`` in ``text`` stands
    for any characters (spaces too: a filter's words cannot hold one)."""
    if "*" not in text:
        return value.lower() == text.lower()
    pattern = ".*".join(re.escape(part) for part in text.split("*"))
    return re.fullmatch(pattern, value, re.IGNORECASE | re.DOTALL) is not None


def _compare(value: float, op: str, number: float) -> bool:
    if op in ("=", "!="):  # 3e-4 typed is 0.0003 stored, within rounding
        return math.isclose(value, number, rel_tol=1e-9, abs_tol=0.0) == (op == "=")
    if op == "<":
        return value < number
    if op == "<=":
        return value <= number
    if op == ">":
        return value > number
    return value >= number


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def parse_condition(word: str) -> Condition | None:
    """The condition ``word`` states, or None for a plain word; ValueError, in words,
    for one that cannot be (``lr<abc``, ``lr=``)."""
    found = _CONDITION.fullmatch(word)
    if found is None:
        return None
    name, op, text = found.groups()
    op = "=" if op == "==" else op
    if not text:
        raise ValueError(f"{word!r}: no value after {op!r}")
    if op == "=" and ".." in text:
        ends = text.split("..")
        bounds = [_number(end) if end else None for end in ends]
        if len(ends) != 2 or not any(ends) or any(
            end and bound is None for end, bound in zip(ends, bounds, strict=True)
        ):
            raise ValueError(f"{word!r}: a range is LOW..HIGH of numbers (either end may "
                             "be left out: lr=..1e-3)")
        low, high = bounds
        return Condition(name, "..", None, text,
                         -math.inf if low is None else low, math.inf if high is None else high)
    number = _number(text)
    if number is None and op not in ("=", "!="):
        raise ValueError(f"{word!r}: {op!r} compares numbers, and {text!r} is not one")
    return Condition(name, op, number, text)


@dataclass(frozen=True)
class RunFilter:
    """What a filter asks of a run: words its text holds, words it does not hold
    (typed after '-'), and conditions on its values."""

    words: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    excluded: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.words or self.conditions or self.excluded)

    def holds_words(self, text: str) -> bool:
        """Whether every word occurs in ``text`` (lower case), and no excluded one."""
        return has_words(text, self.words) and not any(w in text for w in self.excluded)

    def matches(self, run: RunInfo) -> bool:
        return self.holds_words(run_text(run)) and all(c.holds(run) for c in self.conditions)

    @property
    def names(self) -> tuple[str, ...]:
        """The values its conditions name."""
        return tuple(c.name for c in self.conditions)


def parse_filter(text: str, errors: list[str] | None = None) -> RunFilter:
    """The filter ``text`` states. A word that is a condition gone wrong raises
    ValueError, or with ``errors`` is told there and left out (the TUI, as it is typed).
    A word after '-' (``-#old``, ``-lr<1e-3``) leaves out what it would keep; '-' alone
    is a word."""
    words: list[str] = []
    excluded: list[str] = []
    conditions: list[Condition] = []
    for word in text.split():
        negated = word.startswith("-") and len(word) > 1
        try:
            condition = parse_condition(word[1:] if negated else word)
        except ValueError as error:
            if errors is None:
                raise
            errors.append(str(error))
            continue
        if condition is not None:
            conditions.append(replace(condition, negated=True) if negated else condition)
        else:
            (excluded if negated else words).append(word[negated:].lower())
    return RunFilter(tuple(words), tuple(conditions), tuple(excluded))


def filter_errors(text: str) -> list[str]:
    """What is wrong with the conditions of ``text``, one line each (none: nothing)."""
    errors: list[str] = []
    parse_filter(text, errors)
    return errors


def unknown_names(text: str, runs: Collection[RunInfo]) -> list[str]:
    """Why each name the conditions of ``text`` use names nothing any of ``runs`` has
    ('lrr<1e-3': did you mean lr?): such a condition keeps no run."""
    if not runs:
        return []
    names = dict.fromkeys(parse_filter(text, errors=[]).names)
    return [problem for name in names if (problem := unknown_value(runs, name)) is not None]
