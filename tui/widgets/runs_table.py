"""The runs table: one row per run, forks indented under their parent."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from engine.format import format_bytes, format_number
from tui.state import TuiState

STATE_LOOK = {
    "queued": ("…", "bright_black"),
    "starting": ("◌", "cyan"),
    "running": ("▶", "green"),
    "paused": ("‖", "yellow"),
    "finished": ("✔", "blue"),
    "failed": ("✘", "red"),
    "killed": ("■", "magenta"),
}
COLUMNS = ("ID", "NAME", "STATE", "STEP", "LOSS", "EMA", "STEP/S", "ETA", "GPU", "DEV")
# What a narrow terminal (80 columns) keeps; the progress bar goes too.
COMPACT_COLUMNS = ("ID", "NAME", "STATE", "STEP", "LOSS", "EMA", "ETA")
NAME_WIDTH_COMPACT = 18
SORTS = ("tree", "name", "state", "loss", "step")
BAR_WIDTH = 6


def state_text(run: dict[str, Any]) -> Text:
    glyph, style = STATE_LOOK.get(run["state"], ("?", ""))
    label = "released" if run["state"] == "paused" and run.get("released") else run["state"]
    return Text(f"{glyph} {label}", style=style)


def progress_text(run: dict[str, Any], bar: bool = True) -> Text:
    step, total = int(run.get("step") or 0), run.get("total_steps")
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


def row_cells(
    run: dict[str, Any], depth: int, state: TuiState, compact: bool = False
) -> dict[str, str | Text]:
    """Every column's cell for one run (the table shows those its width allows)."""
    indent = "  " * (depth - 1) + "└ " if depth else ""
    name = indent + run["name"]
    if compact and len(name) > NAME_WIDTH_COMPACT:
        name = name[: NAME_WIDTH_COMPACT - 1] + "…"
    rate = state.steps_per_second(run["id"])
    gpu = state.gpu_memory(run["id"])
    cells: tuple[str | Text, ...] = (
        run["id"],
        name,
        state_text(run),
        progress_text(run, bar=not compact),
        format_number(run.get("last", {}).get("loss")),
        format_number(state.smoothed_last(run["id"])),
        f"{rate:.1f}" if rate is not None else "-",
        duration(state.eta_seconds(run["id"])),
        format_bytes(gpu) if gpu else "-",
        run["device"],
    )
    return dict(zip(COLUMNS, cells, strict=True))


def _sort_key(sort: str, run: dict[str, Any]) -> Any:
    if sort == "name":
        return run["name"]
    if sort == "state":
        return (run["state"], run["name"])
    if sort == "loss":
        loss = run.get("last", {}).get("loss")
        return (loss is None, loss if loss is not None else 0.0)
    return -(run.get("step") or 0)


class RunsTable(DataTable[Any]):
    """Renders ``TuiState.runs``; the selected run is the row under the cursor."""

    DEFAULT_CSS = """
    RunsTable { height: auto; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.order_by = "tree"
        self.text_filter = ""
        self.compact = False
        self.pending_select: str | None = None  # a run just started here: select it on arrival
        self._order: list[str] = []

    @property
    def columns_shown(self) -> tuple[str, ...]:
        return COMPACT_COLUMNS if self.compact else COLUMNS

    def set_compact(self, compact: bool) -> None:
        """Show fewer, narrower columns (for terminals under ~110 columns)."""
        if compact == self.compact and self.columns:
            return
        self.compact = compact
        self.clear(columns=True)
        for name in self.columns_shown:
            self.add_column(name, key=name)
        self._order = []  # the next refresh adds the rows again

    @property
    def selected_id(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def refresh_from(self, state: TuiState) -> None:
        """Bring the rows in line with the state, touching only cells that changed."""
        rows = state.tree(self.text_filter)
        if self.order_by != "tree":
            rows = sorted(((r, 0) for r, _ in rows), key=lambda rd: _sort_key(self.order_by, rd[0]))
        order = [run["id"] for run, _ in rows]
        if order != self._order:
            selected = self.selected_id
            self.clear()
            for run, depth in rows:
                cells = row_cells(run, depth, state, self.compact)
                self.add_row(*(cells[c] for c in self.columns_shown), key=run["id"])
            self._order = order
            if self.pending_select in order:
                selected, self.pending_select = self.pending_select, None
            if selected in order:
                self.move_cursor(row=order.index(selected))
            return
        for run, depth in rows:
            cells = row_cells(run, depth, state, self.compact)
            for column in self.columns_shown:
                cell = cells[column]
                if str(self.get_cell(run["id"], column)) != str(cell):
                    self.update_cell(run["id"], column, cell, update_width=True)

    def select(self, run_id: str) -> None:
        if run_id in self._order:
            self.move_cursor(row=self._order.index(run_id))
