"""How a queue is said, by ``traintop queue`` and the TUI's queues screen alike."""

from __future__ import annotations

from typing import Any

from engine.common.format import shown

QUEUE_HEADER = ["QUEUE", "PARALLEL", "RUNNING", "WAITING", "STATE"]


def queue_state(queue: dict[str, Any]) -> str:
    """'open', 'paused: run x failed', with ', pauses on failure' when it would."""
    state = f"paused: {queue['reason']}" if queue["paused"] else "open"
    return state + (", pauses on failure" if queue["pause_on_failure"] else "")


def queue_row(queue: dict[str, Any]) -> list[str]:
    """QUEUE, PARALLEL, RUNNING, WAITING and STATE of one queue."""
    return [shown(queue["name"]), "-" if queue["parallel"] is None else str(queue["parallel"]),
            str(queue["running"]), str(len(queue["waiting"])), queue_state(queue)]


def waiting_lines(queue: dict[str, Any], at_most: int | None = None) -> list[str]:
    """A queue's line, in the order it starts: '  1. ab12cd name priority 5: why'; past
    ``at_most``, one line that says how many more."""
    waiting = queue["waiting"]
    lines = []
    for n, run in enumerate(waiting[:at_most], 1):
        priority = f" priority {run['priority']}" if run["priority"] else ""
        why = f": {run['why']}" if run["why"] else ""
        lines.append(f"  {n:>3}. {run['id']} {shown(run['name'])}{priority}{why}")
    if at_most is not None and len(waiting) > at_most:
        lines.append(f"       … {len(waiting) - at_most} more "
                     f"(traintop queue {shown(queue['name'])})")
    return lines
