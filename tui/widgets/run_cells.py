"""What each column of the runs table shows for a run, how wide it is, how it sorts."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rich.text import Text

from engine.client.events import RunInfo
from engine.common.format import format_bytes, format_number
from tui.run_tree import TreeRow
from tui.state import TuiState

Run = RunInfo

STATE_LOOK = {
    "queued": ("…", "bright_black"),
    "starting": ("◌", "cyan"),
    "running": ("▶", "green"),
    "paused": ("‖", "yellow"),
    "finished": ("✔", "blue"),
    "failed": ("✘", "red"),
    "killed": ("■", "magenta"),
}
STATE_ORDER = tuple(STATE_LOOK)  # sorting by state follows the life of a run
COLUMNS = ("ID", "NAME", "STATE", "STEP", "LOSS", "EMA", "STEP/S", "ETA", "GPU", "DEV")
# What a narrow terminal (80 columns) keeps; the progress bar goes too.
COMPACT_COLUMNS = ("ID", "NAME", "STATE", "STEP", "LOSS", "EMA", "ETA")
# "created" is the table's own order (forks under their parent, oldest first).
SORT_COLUMNS = ("created", *COLUMNS)
NAME_WIDTH = (8, 32)  # the NAME column's narrowest and widest
NAME_WIDTH_COMPACT = 18
BAR_WIDTH = 6
# Widths that do not depend on the data (at least the header's).
FIXED_WIDTHS = {"ID": 6, "STATE": 11, "LOSS": 9, "EMA": 9, "STEP/S": 6, "ETA": 6, "GPU": 8}


def state_text(run: Run) -> Text:
    glyph, style = STATE_LOOK.get(run.state, ("?", ""))
    label = "released" if run.state == "paused" and run.released else run.state
    if run.condition:  # e.g. "disk full": what needs the user now, over the state
        label, style = run.condition, "bold red"
    return Text(f"{glyph} {label}", style=style)


def progress_text(run: Run, bar: bool = True) -> Text:
    step, total = run.step, run.total_steps
    if not total or not bar:
        return Text(f"{step}/{total}" if total else str(step))
    fraction = min(1.0, step / total)
    filled = round(fraction * BAR_WIDTH)
    return Text.assemble(
        (f"{step}/{total} ", ""),
        ("█" * filled, "green"),
        ("░" * (BAR_WIDTH - filled), "bright_black"),
    )


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def name_text(run: Run, row: TreeRow, width: int) -> Text:
    """The name, indented under its parent, with ``+N`` when its forks are folded away."""
    indent = "  " * (row.depth - 1) + "└ " if row.depth else ""
    suffix = f" +{row.hidden}" if row.hidden else ""
    name = run.name
    room = width - len(indent) - len(suffix)
    if len(name) > room:
        name = name[: max(room - 1, 0)] + "…"
    text = Text(indent + name)
    if suffix:
        text.append(suffix, style="bold bright_black")
    return text


def value_cells(run: Run, state: TuiState, compact: bool) -> dict[str, Text]:
    """Every column but NAME (which depends on the row) for one run."""
    rate = state.steps_per_second(run.id)
    gpu = state.gpu_memory(run.id)
    return {
        "ID": Text(run.id),
        "STATE": state_text(run),
        "STEP": progress_text(run, bar=not compact),
        "LOSS": Text(format_number(run.last.get("loss"))),
        "EMA": Text(format_number(state.smoothed_last(run.id))),
        "STEP/S": Text(f"{rate:.1f}" if rate is not None else "-"),
        "ETA": Text(duration(state.eta_seconds(run.id))),
        "GPU": Text(format_bytes(gpu) if gpu else "-"),
        "DEV": Text(run.device or ""),
    }


def column_widths(
    columns: Iterable[str], runs: Iterable[Run], rows: Iterable[TreeRow], compact: bool
) -> dict[str, int]:
    """Widths that fit every run's cells (the NAME column is capped), from cheap lengths."""
    widths = {c: max(len(c) + 1, FIXED_WIDTHS.get(c, 0)) for c in columns}
    runs_by_id = {r.id: r for r in runs}
    name_cap = NAME_WIDTH_COMPACT if compact else NAME_WIDTH[1]
    name = NAME_WIDTH[0]
    for row in rows:
        run = runs_by_id[row.id]
        suffix = len(f" +{row.hidden}") if row.hidden else 0
        name = max(name, 2 * row.depth + len(run.name) + suffix)
    widths["NAME"] = min(name, name_cap)
    totals = [len(str(r.total_steps or r.step or 0)) for r in runs_by_id.values()]
    digits = max(totals, default=1)
    widths["STEP"] = max(widths["STEP"], 2 * digits + 1 + (0 if compact else BAR_WIDTH + 1))
    if "DEV" in widths:
        devices = (len(r.device or "") for r in runs_by_id.values())
        widths["DEV"] = max(widths["DEV"], *devices, 0)
    return widths


def _finite(value: Any) -> float | None:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def sort_key(column: str, state: TuiState) -> Callable[[Run], Any] | None:
    """How ``column`` orders runs (None: creation order). Unknown values sort last."""
    keys: Mapping[str, Callable[[Run], Any]] = {
        "ID": lambda r: r.id,
        "NAME": lambda r: r.name.lower(),
        "STATE": lambda r: STATE_ORDER.index(r.state) if r.state in STATE_ORDER else 99,
        "STEP": lambda r: r.step,
        "LOSS": lambda r: _finite(r.last.get("loss")),
        "EMA": lambda r: _finite(state.smoothed_last(r.id)),
        "STEP/S": lambda r: state.steps_per_second(r.id),
        "ETA": lambda r: state.eta_seconds(r.id),
        "GPU": lambda r: state.gpu_memory(r.id),
        "DEV": lambda r: r.device or "",
    }
    return keys.get(column)


# Columns whose values move while runs train: a table sorted by one re-sorts now and then.
LIVE_SORTS = frozenset({"STEP", "LOSS", "EMA", "STEP/S", "ETA", "GPU"})
