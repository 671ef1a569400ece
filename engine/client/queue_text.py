"""How a queue, and the warm pool that starts the runs queues let go, are said: by
``traintop queue`` and ``traintop engine status``, and the TUI's queues screen alike."""

from __future__ import annotations

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
