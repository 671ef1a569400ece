"""The sweep view's parallel coordinates: an axis a setting and one for the metric, each
run a braille line across them, shaded from the best runs (green) to the worst (red),
the worst drawn first so that the best lie on top, the best run of all in white, marked
where it crosses each axis. Each axis is labelled with its lowest value under it, its
highest over it and its name at the foot.

The frame is laid out once per (size, data) and kept as strips, like the chart's.
"""

from __future__ import annotations

from itertools import pairwise

from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from tui.parallel_data import SHADES, Parallel
from tui.widgets.cell_rows import cells_strip
from tui.widgets.chart_layout import DIM, DotLayer
from tui.widgets.sweep_scatter import AXIS, BEST, POINT

AXIS_LINE = "│"
BEST_STYLE = Style(color="bright_white", bold=True)  # the best run's line and marks
MIN_GAP = 4  # columns between two axes, at least


class ParallelPlot(Widget):
    """Runs as lines across one axis per setting and one for the metric."""

    DEFAULT_CSS = """
    ParallelPlot { height: 1fr; min-height: 6; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._data: Parallel | None = None
        self._strips: list[Strip] = []
        self._key: tuple[object, ...] | None = None

    @property
    def data(self) -> Parallel | None:
        """What is drawn now."""
        return self._data

    def set_data(self, data: Parallel) -> None:
        """Draw ``data`` (the same data again draws nothing)."""
        if data != self._data:
            self._data = data
            self.refresh()

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size
        key = (width, height, self._data)
        if key != self._key:
            self._strips, self._key = self._layout(width, height), key
        if 0 <= y < len(self._strips):
            return self._strips[y]
        return Strip.blank(width, self.rich_style)

    def columns(self, width: int) -> list[int]:
        """The cell column of each axis: evenly apart, room for a label at either end."""
        count = len(self._data.axes) if self._data else 0
        if count < 2:
            return []
        margin = min(6, max((width - 1) // (2 * count), 1))
        span = width - 1 - 2 * margin
        return [margin + round(i * span / (count - 1)) for i in range(count)]

    def _layout(self, width: int, height: int) -> list[Strip]:
        base = self.rich_style
        cells = [[" "] * width for _ in range(height)]
        styles = [[base] * width for _ in range(height)]

        def put(row: int, col: int, text: str, style: Style) -> None:
            for offset, char in enumerate(text):
                if 0 <= col + offset < width:
                    cells[row][col + offset], styles[row][col + offset] = char, style

        def strips() -> list[Strip]:
            return [cells_strip(cells[r], styles[r], width) for r in range(height)]

        data = self._data
        columns = self.columns(width)
        plot_h = height - 3  # the highest values over the plot, the lowest and names under
        gap = min((b - a for a, b in pairwise(columns)), default=0)
        if data is None or not data.lines or len(columns) < 2 or gap < MIN_GAP or plot_h < 2:
            note = "" if data is None else (
                "no run has a value of the metric" if not data.lines else
                "the runs differ in no setting" if len(data.axes) < 2 else
                "too narrow for this many axes")
            put(min(height // 2, max(height - 1, 0)), 0, note.center(width)[:width], base + DIM)
            return strips()

        layer = DotLayer(width, plot_h)
        dots_h = plot_h * 4 - 1
        # Each segment in dots, drawn once: lines that share one (a word axis's, a grid's)
        # leave it to the last of them, the best, which a cell shows anyway (500 runs
        # across 6 axes: ~3,000 segments, a few hundred of them apart).
        segments: dict[tuple[int, int, int], int] = {}
        for index, line in enumerate(data.lines):  # worst first: the best drawn last
            for i, (a, b) in enumerate(pairwise(line.positions)):
                if a is not None and b is not None:
                    key = (i, round((1 - a) * dots_h), round((1 - b) * dots_h))
                    segments.pop(key, None)  # (re-inserted: drawn in its last line's turn)
                    segments[key] = index
        for (i, y0, y1), index in segments.items():
            layer.line(columns[i] * 2 + 2, y0, columns[i + 1] * 2 - 1, y1, index)
        shades = [base + Style.parse(shade) for shade in SHADES]
        best_style = base + BEST_STYLE
        for r in range(plot_h):
            for c in range(width):
                cell = r * width + c
                if layer.mask[cell]:
                    owner = data.lines[layer.owner[cell]]
                    style = best_style if owner.best else shades[owner.shade]
                    cells[r + 1][c], styles[r + 1][c] = chr(0x2800 + layer.mask[cell]), style
        label_w = gap - 1
        for i, (axis, col) in enumerate(zip(data.axes, columns, strict=True)):
            for r in range(plot_h):
                put(r + 1, col, AXIS_LINE, base + AXIS)
            low, high = axis.end_labels()
            edge = 2 * col + 1 if i == 0 else 2 * (width - col) - 1
            room = min(label_w, edge)
            for row, text, style in ((0, high, base), (height - 2, low, base),
                                     (height - 1, axis.name, base + Style(bold=True))):
                text = text if len(text) <= room else text[: max(room - 1, 1)] + "…"
                put(row, min(max(col - len(text) // 2, 0), width - len(text)), text, style)
        best = next((line for line in data.lines if line.best), None)
        if best is not None:
            for i, (position, col) in enumerate(zip(best.positions, columns, strict=True)):
                if position is not None:
                    put(1 + round((1 - position) * (plot_h - 1)), col,
                        BEST if i == len(columns) - 1 else POINT, best_style)
        return strips()
