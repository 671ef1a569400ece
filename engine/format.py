"""Plain-text rendering of runs for the command line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_number(value: Any) -> str:
    """A metric value in at most ~7 characters."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_line_values(run: dict[str, Any]) -> list[str]:
    """The columns of ``traintop ls`` for one run."""
    step = str(run["step"]) + (f"/{run['total_steps']}" if run["total_steps"] else "")
    state = run["state"] + ("*" if run["released"] else "")
    parent = ""
    if run["parent_id"]:
        parent = run["parent_id"] + (f"@{run['fork_step']}" if run["fork_step"] is not None else "")
    loss = format_number(run.get("last", {}).get("loss"))
    return [run["id"], run["name"], state, step, loss, run["device"], parent]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in (header, *rows)
    ]
    return "\n".join(lines)
