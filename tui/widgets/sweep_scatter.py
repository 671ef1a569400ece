"""The sweep view's scatter: one glyph per run at (hyper-parameter, metric), in the run's
own colour, the best run a star; a setting of several runs (grouped) is its mean, with
an error bar from its lowest run to its highest. Axes and ticks are drawn as the loss
chart draws them.

The frame is laid out once per (size, data) and kept as strips, like the chart's.
"""

from __future__ import annotations

import math

from rich.style import Style
from textual.strip import Strip

from tui.chart_math import format_log_tick, format_tick, log_ticks, nice_ticks
from tui.scatter_data import Scatter
from tui.widgets.cell_rows import cells_strip
from tui.widgets.chart_layout import DIM, GUTTER
from tui.widgets.picked_plot import PickedPlot

POINT, BEST = "●", "★"
PICK, PICKED_COLOUR = "◆", "bright_cyan"  # the run picked with j/k in the sweep view
BAR, BAR_TOP, BAR_FOOT = "│", "┬", "┴"  # a group's range, capped at its ends
AXIS = Style(color="bright_black")


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """A range around [lo, hi] with a margin, so no point sits on an axis."""
    pad = (hi - lo) * 0.08 or max(abs(lo) * 0.1, 0.5)
    return lo - pad, hi + pad


class SweepScatter(PickedPlot[Scatter]):
    """Runs as points: x a hyper-parameter, y a metric (each on a log scale when its
    values span 10x or more)."""

    DEFAULT_CSS = """
    SweepScatter { height: 1fr; min-height: 6; }
    """

    @property
    def scatter(self) -> Scatter | None:
        """What is drawn now."""
        return self._data

    def _layout(self, width: int, height: int) -> list[Strip]:
        base = self.rich_style
        cells = [[" "] * width for _ in range(height)]
        styles = [[base] * width for _ in range(height)]
        scatter = self._data
        plot_w, plot_h = width - GUTTER - 1, height - 1
        if scatter is None or not scatter.points or plot_w < 4 or plot_h < 2:
            note = "no run has a numeric value of both axes" if scatter else ""
            row = min(height // 2, max(height - 1, 0))
            for i, char in enumerate(note.center(width)[:width]):
                cells[row][i], styles[row][i] = char, base + DIM
            return [cells_strip(cells[r], styles[r], width) for r in range(height)]

        def to_x(value: float) -> float:
            return math.log10(value) if scatter.log_x else value

        def to_y(value: float) -> float:
            return math.log10(value) if scatter.log_y else value

        x_lo, x_hi = _padded(min(to_x(p.x) for p in scatter.points),
                             max(to_x(p.x) for p in scatter.points))
        y_lo, y_hi = _padded(min(to_y(p.y if p.low is None else p.low) for p in scatter.points),
                             max(to_y(p.y if p.high is None else p.high)
                                 for p in scatter.points))

        def put(row: int, col: int, text: str, style: Style) -> None:
            for offset, char in enumerate(text[: max(width - col, 0)]):
                cells[row][col + offset], styles[row][col + offset] = char, style

        for r in range(plot_h):
            put(r, GUTTER - 1, "│", base + AXIS)
        if scatter.log_y:
            y_ticks = [(math.log10(v), format_log_tick(v))
                       for v in log_ticks(y_lo, y_hi, max(2, plot_h // 3))]
        else:
            values = nice_ticks(y_lo, y_hi, max(2, plot_h // 3))
            step = values[1] - values[0] if len(values) > 1 else y_hi - y_lo
            y_ticks = [(v, format_tick(v, step)) for v in values]
        for position, label in y_ticks:
            row = round((y_hi - position) / (y_hi - y_lo) * (plot_h - 1))
            if 0 <= row < plot_h:
                put(row, 0, label[: GUTTER - 1].rjust(GUTTER - 1), base)
                put(row, GUTTER - 1, "┤", base + AXIS)
        axis = height - 1
        put(axis, 0, scatter.x_name[: GUTTER - 1], base + DIM)
        if scatter.log_x:
            ticks = [(math.log10(v), format_log_tick(v)) for v in log_ticks(x_lo, x_hi, 4)]
        else:
            marks = nice_ticks(x_lo, x_hi, max(2, plot_w // 12))
            x_step = marks[1] - marks[0] if len(marks) > 1 else x_hi - x_lo
            ticks = [(v, format_tick(v, x_step)) for v in marks]
        free_from = GUTTER
        for position, label in ticks:
            col = GUTTER + round((position - x_lo) / (x_hi - x_lo) * (plot_w - 1))
            start = min(col - len(label) // 2, width - len(label))
            if start >= free_from:
                put(axis, start, label, base)
                free_from = start + len(label) + 1
        def column(x: float) -> int:
            return GUTTER + round((to_x(x) - x_lo) / (x_hi - x_lo) * (plot_w - 1))

        def row_of(y: float) -> int:
            return round((y_hi - to_y(y)) / (y_hi - y_lo) * (plot_h - 1))

        for point in scatter.points:  # the bars first: no bar hides a point
            if point.low is None or point.high is None:
                continue
            top, foot = row_of(point.high), row_of(point.low)
            style = base + Style.parse(point.colour or "default") + DIM
            for row in range(top, foot + 1):
                put(row, column(point.x),
                    BAR_TOP if row == top < foot else BAR_FOOT if row == foot > top else BAR,
                    style)
        # The best run last, so it is the one seen where points share a cell; the
        # picked one after it.
        picked = base + Style(color=PICKED_COLOUR, bold=True)
        for point in sorted(scatter.points,
                            key=lambda p: (p.run_id == self._picked, p.best)):
            style = base + Style.parse(point.colour or "default") + Style(bold=point.best)
            if point.run_id == self._picked:
                style = picked
            put(row_of(point.y), column(point.x),
                PICK if point.run_id == self._picked else BEST if point.best else POINT, style)
        return [cells_strip(cells[r], styles[r], width) for r in range(height)]
