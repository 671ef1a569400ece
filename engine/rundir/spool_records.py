"""Spool lines decoded once, at the edge: a typed record, or the reason it was refused.

The daemon trusts nothing a worker wrote (a user's script, a stray process or
a person with an editor can append to ``spool.jsonl``): every field it uses is
checked here, so that past this module a record cannot raise. A record that
fails a check becomes ``Malformed`` and is skipped and counted; in a metrics
record each bad point is dropped on its own and its neighbours are kept.
The formats are those ``engine.run.spool_writer`` writes; fields it does not know
are ignored, so a newer writer's additions do no harm.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

# One point as the spool carries it and the store keeps it: (step, key, value, time).
Metric = tuple[int, str, float, float]


# Longer metric names are refused: they would swell every page and event they are in.
MAX_KEY_LENGTH = 200
# The largest step: past it a double (the chart's axis, a JS client) no longer counts
# exactly, and a step one past it still fits SQLite's integers.
MAX_STEP = 2**53
# Times are kept as int64 microseconds; this bound (year ~33,000) keeps them far inside.
MAX_TIME = 1e12


@dataclass(frozen=True)
class MetricsRecord:
    """The usable points of a ``metrics`` record, and what was wrong with the rest."""

    points: list[Metric]
    bad_points: int = 0
    problem: str | None = None  # why the first bad point was refused
    # Steps done after these points when the writer says so: a wrapped command's steps are
    # its script's own counts (step 300 is 300 done), not indices from 0.
    done: int | None = None


@dataclass(frozen=True)
class StateRecord:
    """A worker's state change: running, paused, resumed, released or finished."""

    state: str
    step: int
    total: int | None = None  # 'running' only
    checkpoint: str | None = None  # 'released' and 'finished' only
    # 'running' only: the generation goes on from a checkpoint at ``step``, so the points
    # an earlier one logged there and after are dropped (a wrapped command's is False: it
    # says where it went on from with a RewindRecord, at its first points).
    rewind: bool = True


@dataclass(frozen=True)
class RewindRecord:
    """A retried command's first points are at ``step``: an earlier generation's points
    there and after are dropped (the command went on from what it saved itself)."""

    step: int


@dataclass(frozen=True)
class CheckpointRecord:
    """The answer to a ``checkpoint`` control command: ``path`` is None if nothing is tracked."""

    request: str
    step: int
    path: str | None


@dataclass(frozen=True)
class ErrorRecord:
    """Why the run failed, in one line."""

    message: str


@dataclass(frozen=True)
class HeldRecord:
    """The worker could write its spool again after the disk refused it: what it held and
    dropped, and while what (``refused_while``: "the disk was full")."""

    held: int
    dropped: int
    refused: str = "the disk was full"  # (a worker from before says nothing of it)


@dataclass(frozen=True)
class Malformed:
    """A line that is not a valid record; ``problem`` says why, for the log."""

    problem: str


SpoolRecord = (MetricsRecord | StateRecord | RewindRecord | CheckpointRecord | ErrorRecord
               | HeldRecord | Malformed)

STATES = frozenset({"running", "paused", "resumed", "released", "finished"})


@dataclass
class SpoolBatch:
    """Points read from a spool, to store in one transaction with the offset they end at.

    The daemon's tail and ``traintop engine rebuild`` fold records the same way
    through ``fold``; a record it does not take (a state change, a checkpoint,
    an error) is the caller's to act on.
    """

    step: int = 0  # steps done after these points: a point at step s means s + 1
    points: list[Metric] = field(default_factory=list)
    bad_records: int = 0
    bad_points: int = 0
    problem: str | None = None  # the first thing skipped, for the log

    def fold(self, record: SpoolRecord) -> bool:
        """Take in a metrics or malformed record; False for any other (left to the caller)."""
        if isinstance(record, MetricsRecord):
            self.points += record.points
            self.bad_points += record.bad_points
            self.problem = self.problem or record.problem
            if record.done is not None:
                self.step = max(self.step, record.done)
            else:
                self.step = max([self.step, *(p[0] + 1 for p in record.points)])
            return True
        if isinstance(record, Malformed):
            self.bad_records += 1
            self.problem = self.problem or record.problem
            return True
        return False

    @property
    def skipped(self) -> tuple[int, int]:
        """Malformed records and bad points, as the store counts them."""
        return self.bad_records, self.bad_points


def rewinds_at(record: SpoolRecord) -> int | None:
    """The step from which a record drops what earlier generations logged (a generation's
    ``running`` record, or a retried command's ``rewind``), or None; the daemon and
    ``engine rebuild`` both drop there, before the record acts."""
    if isinstance(record, RewindRecord):
        return record.step
    if isinstance(record, StateRecord) and record.state == "running" and record.rewind:
        return record.step
    return None


def steps_after(step: int, record: StateRecord) -> int:
    """Steps done after a state record, ``step`` before it.

    A 'running' record sets the count (a generation that resumed from a
    checkpoint counts on from there); the others never lower it.
    """
    return record.step if record.state == "running" else max(step, record.step)


class _Refused(Exception):
    """A field failed its check (caught here and turned into ``Malformed``)."""


def decode_record(line: bytes) -> SpoolRecord:
    """The record one spool line holds, checked field by field."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
        return Malformed("not a JSON line")
    if not isinstance(record, dict):
        return Malformed("not a JSON object")
    kind = record.get("t")
    try:
        _count(record, "gen")
        if kind == "metrics":
            return _metrics(record)
        _time(record.get("time"), "time")
        if kind == "state":
            return _state(record)
        if kind == "checkpoint":
            return CheckpointRecord(
                _text(record, "request"), _step(record.get("step")), _path(record, "path")
            )
        if kind == "error":
            return ErrorRecord(_text(record, "message"))
        if kind == "spool":
            refused = record.get("while")
            if not (isinstance(refused, str) and refused.isprintable() and 0 < len(refused) < 200):
                refused = HeldRecord.refused  # (said by no worker from before)
            return HeldRecord(_count(record, "held"), _count(record, "dropped"), refused)
        if kind == "rewind":
            return RewindRecord(_step(record.get("step")))
    except _Refused as exc:
        return Malformed(f"{_shown_kind(kind)} record: {exc}")
    return Malformed(f"unknown record kind {_shown_kind(kind)}")


def _metrics(record: dict[str, Any]) -> MetricsRecord:
    raw = record.get("points")
    if not isinstance(raw, list):
        raise _Refused("points must be a list")
    points: list[Metric] = []
    problem: str | None = None
    # The usual point is checked inline, with names bound locally: thousands a
    # second per run, and a call per point would cost more than parsing the JSON.
    # ``type(x) is int`` leaves out true/false; the range tests, NaN and infinity.
    append, max_step, max_key, max_time = points.append, MAX_STEP, MAX_KEY_LENGTH, MAX_TIME
    for item in raw:
        if type(item) is list and len(item) == 4:
            step, key, value, when = item
            if (
                type(step) is int and 0 <= step <= max_step
                and type(key) is str and len(key) <= max_key
                and type(value) is float  # null is rare: _point makes it NaN
                and type(when) is float and 0 <= when < max_time
            ):
                append((step, key, value, when))
                continue
        try:  # anything else, with the reason it fails
            points.append(_point(item))
        except _Refused as exc:
            problem = problem or str(exc)
    done = record.get("done")
    return MetricsRecord(
        points, len(raw) - len(points), problem, None if done is None else _step(done)
    )


def _point(item: Any) -> Metric:
    if not isinstance(item, list) or len(item) != 4:
        raise _Refused("a point must be [step, key, value, time]")
    step, key, value, when = item
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH:
        raise _Refused(f"a key must be a string of at most {MAX_KEY_LENGTH} characters")
    if value is not None and not _is_number(value):
        raise _Refused(f"the value of {key[:40]!r} is not a number")
    try:
        number = math.nan if value is None else float(value)  # no value: NaN, as stored
    except OverflowError:  # an integer too large for a float
        raise _Refused(f"the value of {key[:40]!r} is out of range") from None
    return (_step(step), key, number, _time(when, "a point's time"))


def _state(record: dict[str, Any]) -> StateRecord:
    state = record.get("state")
    if state not in STATES:
        raise _Refused(f"unknown state {str(state)[:40]!r}")
    step = _step(record.get("step"))
    if state == "running":
        rewind = record.get("rewind") is not False  # only a wrapped command's says false
        return StateRecord(state, step, total=_total(record), rewind=rewind)
    if state in ("released", "finished"):
        return StateRecord(state, step, checkpoint=_path(record, "checkpoint"))
    return StateRecord(state, step)


def _total(record: dict[str, Any]) -> int | None:
    """A 'running' record's step total; None when it has none or one past ``MAX_STEP``.

    ``run.steps(10**20)`` trains like any run: refusing its record would leave it
    'starting' for ever, so only its total is dropped (shown as unknown).
    """
    total = record.get("total")
    too_many = isinstance(total, int) and not isinstance(total, bool) and total > MAX_STEP
    if total is None or too_many:
        return None
    return _count(record, "total")


def _is_number(value: Any) -> bool:
    # true and false are ints to isinstance, but no writer logs them as numbers.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_STEP


def _step(value: Any) -> int:
    if not _whole(value):
        raise _Refused(f"step must be a whole number from 0 to {MAX_STEP}, not {_brief(value)}")
    return int(value)


def _count(record: dict[str, Any], name: str) -> int:
    value: Any = record.get(name)
    if not _whole(value):
        raise _Refused(f"{name} must be a whole number, not {_brief(value)}")
    return int(value)


def _time(value: Any, name: str) -> float:
    if not _is_number(value) or not (math.isfinite(value) and 0 <= value < MAX_TIME):
        raise _Refused(f"{name} must be unix seconds, not {_brief(value)}")
    return float(value)


def _text(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise _Refused(f"{name} must be a string, not {_brief(value)}")
    return value


def _path(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is not None and (not isinstance(value, str) or not value or "\0" in value):
        raise _Refused(f"{name} must be a file path or null, not {_brief(value)}")
    return value


def _brief(value: Any) -> str:
    """A field's value as the log shows it: short, whatever it holds."""
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _shown_kind(kind: Any) -> str:
    return repr(kind) if isinstance(kind, str) and len(kind) <= 20 else "(bad 't' field)"
