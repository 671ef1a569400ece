"""Which runs a listing shows, and in what order.

``traintop ls`` and the TUI's runs table share these rules, so a filter typed in
one finds the same runs in the other: every word must occur in the run's id,
name, state, workload, device, sweep or tags (case ignored), and a sort puts runs
without a value last whichever way it goes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from engine.client.events import RunInfo
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


def filter_words(text: str) -> list[str]:
    """The words of a filter, lower case (none: everything matches)."""
    return text.lower().split()


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
