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
SORTS = ("tree", "name", "state", "loss", "step")
BAR_WIDTH = 6


def state_text(run: dict[str, Any]) -> Text:
    glyph, style = STATE_LOOK.get(run["state"], ("?", ""))
    label = "released" if run["state"] == "paused" and run.get("released") else run["state"]
    return Text(f"{glyph} {label}", style=style)


def progress_text(run: dict[str, Any]) -> Text:
    step, total = int(run.get("step") or 0), run.get("total_steps")
    if not total:
        return Text(str(step))
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


def row_cells(run: dict[str, Any], depth: int, state: TuiState) -> tuple[str | Text, ...]:
    indent = "  " * (depth - 1) + "└ " if depth else ""
    rate = state.steps_per_second(run["id"])
    gpu = state.gpu_memory(run["id"])
    return (
        run["id"],
        indent + run["name"],
        state_text(run),
        progress_text(run),
        format_number(run.get("last", {}).get("loss")),
        format_number(state.smoothed_last(run["id"])),
        f"{rate:.1f}" if rate is not None else "-",
        duration(state.eta_seconds(run["id"])),
        format_bytes(gpu) if gpu else "-",
        run["device"],
    )


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
        self.pending_select: str | None = None  # a run just started here: select it on arrival
        self._order: list[str] = []

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    @property
    def selected_id(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def refresh_from(self, state: TuiState) -> None:
        """Bring the rows in line with the state, touching only cells that changed."""
        rows = state.tree(self.text_filter)
        if self.order_by != "tree":
            rows = sorted(
                ((r, 0) for r, _ in rows), key=lambda rd: _sort_key(self.order_by, rd[0])
            )
        order = [run["id"] for run, _ in rows]
        if order != self._order:
            selected = self.selected_id
            self.clear()
            for run, depth in rows:
                self.add_row(*row_cells(run, depth, state), key=run["id"])
            self._order = order
            if self.pending_select in order:
                selected, self.pending_select = self.pending_select, None
            if selected in order:
                self.move_cursor(row=order.index(selected))
            return
        for run, depth in rows:
            for column, cell in zip(COLUMNS, row_cells(run, depth, state), strict=True):
                if str(self.get_cell(run["id"], column)) != str(cell):
                    self.update_cell(run["id"], column, cell, update_width=True)

    def select(self, run_id: str) -> None:
        if run_id in self._order:
            self.move_cursor(row=self._order.index(run_id))
