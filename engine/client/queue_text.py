"""How a queue, and the warm pool that starts the runs queues let go, are said: by
``traintop queue`` and ``traintop engine status``, and the TUI's queues screen alike."""

from __future__ import annotations

import difflib
from typing import Any

from engine.common.format import shown

QUEUE_HEADER = ["QUEUE", "PARALLEL", "RUNNING", "WAITING", "STATE"]


def queue_state(queue: dict[str, Any]) -> str:
    """'open', 'paused: run x failed', with ', pauses on failure' when it would."""
    state = f"paused: {queue['reason']}" if queue["paused"] else "open"
    return state + (", pauses on failure" if queue["pause_on_failure"] else "")


def waiting_count(queue: dict[str, Any]) -> int:
    """How many runs wait in a queue (a listing may hold only the first of them)."""
    return int(queue.get("waiting_count", len(queue["waiting"])))


def queue_row(queue: dict[str, Any]) -> list[str]:
    """QUEUE, PARALLEL, RUNNING, WAITING and STATE of one queue."""
    return [shown(queue["name"]), "-" if queue["parallel"] is None else str(queue["parallel"]),
            str(queue["running"]), str(waiting_count(queue)), queue_state(queue)]


def waiting_lines(queue: dict[str, Any], at_most: int | None = None) -> list[str]:
    """A queue's line, in the order it starts: '  1. ab12cd name priority 5: why'; past
    ``at_most``, one line that says how many more."""
    waiting = queue["waiting"][:at_most]
    lines = []
    for n, run in enumerate(waiting, 1):
        priority = f" priority {run['priority']}" if run["priority"] else ""
        why = f": {run['why']}" if run["why"] else ""
        lines.append(f"  {n:>3}. {run['id']} {shown(run['name'])}{priority}{why}")
    if (more := waiting_count(queue) - len(waiting)) > 0:
        lines.append(f"       … {more} more (traintop queue {shown(queue['name'])})")
    return lines


def pool_text(pool: dict[str, Any]) -> str:
    """The warm pool's state, as ``engine status`` and the queues screen say it."""
    served = f"{pool['forked']} runs forked, {pool['cold']} started cold"
    state = pool["state"]
    if state == "off":
        return f"off (TRAINTOP_WARM_POOL=0): every run imports torch itself; {served}"
    if state == "not started":
        return "not started (the first run starts it)"
    if state == "retrying":
        return f"its server died before it was ready ({pool['problem']}); retrying; {served}"
    doing = "ready" if state == "ready" else "importing torch"
    return f"{doing} (pid {pool['pid']}); {served}"


def new_queue_text(name: str, queues: list[dict[str, Any]]) -> str | None:
    """What to say of a queue a new run names, if nothing has made or used it yet (a
    misspelt name, most often): the limit it gets, and the queue it is closest to
    ('it runs 2 runs at a time, ...; did you mean 'grid'?'). None: a known queue."""
    known = [str(q["name"]) for q in queues]
    if name in known:
        return None
    limit = next((q["parallel"] for q in queues if q["name"] == "default"), None)
    runs = "any number of runs" if limit is None else f"{limit} run{'s' if limit != 1 else ''}"
    text = (f"it runs {runs} at a time, as the default queue does "
            f"('traintop queue {name} --parallel N' sets it)")
    near = difflib.get_close_matches(name, known, n=1)
    return text + (f"; did you mean {near[0]!r}?" if near else "")
