"""The sweep view's parallel coordinates: an axis a setting and one for the metric, each
run a braille line across them, shaded from the best runs (green) to the worst (red),
the worst drawn first so that the best lie on top, the best run of all in white, marked
where it crosses each axis; the run picked (j/k in the sweep view) over them all, in
cyan, its value written beside each axis. Each axis is labelled with its lowest value under it, its
highest over it and its name at the foot.

The frame is laid out once per (size, data) and kept as strips, like the chart's.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from rich.style import Style
from textual.strip import Strip

from engine.common.format import format_number
from tui.parallel_data import SHADES, Line, Parallel
from tui.widgets.cell_rows import cells_strip
from tui.widgets.chart_layout import DIM, DotLayer
from tui.widgets.picked_plot import PickedPlot
from tui.widgets.sweep_scatter import AXIS, BEST, PICK, PICKED_COLOUR, POINT

AXIS_LINE = "│"
BEST_STYLE = Style(color="bright_white", bold=True)  # the best run's line and marks
MIN_GAP = 4  # columns between two axes, at least


class ParallelPlot(PickedPlot[Parallel]):
    """Runs as lines across one axis per setting and one for the metric."""

    DEFAULT_CSS = """
    ParallelPlot { height: 1fr; min-height: 6; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._lines_drawn: tuple[tuple[object, ...], DotLayer] | None = None

    @property
    def data(self) -> Parallel | None:
        """What is drawn now."""
        return self._data

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

        dots_h = plot_h * 4 - 1

        def segments(lines: Sequence[Line]) -> dict[tuple[int, int, int], int]:
            """Each segment in dots, once: lines that share one (a word axis's, a grid's)
            leave it to the last of them, the best, which a cell shows anyway (500 runs
            across 6 axes: ~3,000 segments, a few hundred of them apart)."""
            found: dict[tuple[int, int, int], int] = {}
            for index, line in enumerate(lines):
                for i, (a, b) in enumerate(pairwise(line.positions)):
                    if a is not None and b is not None:
                        key = (i, round((1 - a) * dots_h), round((1 - b) * dots_h))
                        found.pop(key, None)  # (re-inserted: drawn in its last line's turn)
                        found[key] = index
            return found

        def drawn(lines: Sequence[Line]) -> DotLayer:
            layer = DotLayer(width, plot_h)
            for (i, y0, y1), index in segments(lines).items():
                layer.line(columns[i] * 2 + 2, y0, columns[i + 1] * 2 - 1, y1, index)
            return layer

        picked = next((line for line in data.lines if line.run_id == self._picked), None)
        if self._lines_drawn is None or self._lines_drawn[0] != (width, height, data):
            # every run's line, kept: a pick (j/k) draws only its own line anew
            self._lines_drawn = ((width, height, data), drawn(data.lines))
        layers = [self._lines_drawn[1], drawn([picked] if picked else [])]  # picked on top
        shades = [base + Style.parse(shade) for shade in SHADES]
        best_style = base + BEST_STYLE
        picked_style = base + Style(color=PICKED_COLOUR, bold=True)
        for r in range(plot_h):
            for c in range(width):
                cell = r * width + c
                if layers[1].mask[cell]:
                    dots, style = layers[1].mask[cell], picked_style
                elif layers[0].mask[cell]:
                    owner = data.lines[layers[0].owner[cell]]
                    dots = layers[0].mask[cell]
                    style = best_style if owner.best else shades[owner.shade]
                else:
                    continue
                cells[r + 1][c], styles[r + 1][c] = chr(0x2800 + dots), style
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
        for marked, style in ((best, best_style), (picked, picked_style)):
            if marked is None:
                continue
            last = len(columns) - 1
            for i, (position, col) in enumerate(zip(marked.positions, columns, strict=True)):
                if position is None:
                    continue
                row = 1 + round((1 - position) * (plot_h - 1))
                put(row, col, PICK if marked is picked else BEST if i == last else POINT, style)
                if marked is picked:  # its value beside each axis (the last: before it)
                    text = marked.texts[i] if i < last else format_number(marked.value)
                    text = text[: max(label_w - 2, 1)]
                    if i == last:
                        put(row, col - len(text) - 1, text + " ", style)
                    else:
                        put(row, col + 1, " " + text, style)
        return strips()
