"""One frame of the loss chart, laid out as strips: braille curves, axes, legend, markers.

``ChartLayout`` reads what a ``LossChart`` holds (its series, their smoothed
curves, markers and view) and is built once per state and size; the widget
keeps the strips it makes, so a repaint costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from tui.chart_labels import LABEL_ROWS, Label, dot_row, label_texts, place_labels, value_at
from tui.chart_math import (
    MinMax,
    downsample_minmax_gaps,
    format_log_tick,
    format_tick,
    format_value,
    inlier_range,
    log_ticks,
    nice_ticks,
    snap_outward,
)
from tui.chart_zoom import PlotFrame
from tui.time_axis import axis_ticks, x_text
from tui.widgets.cell_rows import cells_strip
from tui.widgets.chart_legend import LegendEntry, legend_lines

if TYPE_CHECKING:
    from tui.widgets.loss_chart import LossChart

PALETTE = ("bright_cyan", "magenta", "yellow", "green", "red", "blue", "bright_white", "cyan")
GUTTER = 8  # 7 characters of y label and the axis line
MIN_WIDTH_FOR_GUTTER = 24
# Braille dot bits by (x in cell, y in cell): U+2800 plus the sum of the lit dots.
DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
DIM = Style(dim=True)
CURSOR = Style(color="white")
LIVE_Y_STEPS = 6  # a live chart's y range moves in sixths of its span
# Said over the plot when values far outside the rest are left off it (``y`` fits them).
OFF_CHART = " outliers off the chart (y: fit them) "
LEGEND_SHARE = 3  # the legend takes at most this fraction (1/N) of the chart's rows


# A curve downsampled to the plot's dot columns: each one's (min, max) or None, and
# whether a gap in the data falls there.
Buckets = tuple[list[MinMax | None], list[bool]]


@dataclass
class Series:
    """One curve: a run's metric against step or wall time."""

    label: str  # e.g. "a1b2c3 lr=3e-4"
    xs: Sequence[float]  # step or wall time, ascending
    ys: Sequence[float | None]
    style: str | None = None  # None: palette by position
    emphasis: bool = False  # the selected run: bold, first in the legend, raw points shown
    # The smoothed curve as (xs, ys) when someone else computed it (the daemon does, over
    # every point, while xs/ys then hold each bucket's min and max): drawn when smoothing.
    curve: tuple[Sequence[float], Sequence[float | None]] | None = None
    run_id: str = ""  # the run it shows ("" when it stands for none)
    # Half the x range each x stands for: a daemon's bucket is drawn at its middle. The
    # cursor's readout takes a point when its bucket starts at or before the cursor.
    x_half: float = 0.0
    # A group of runs (``tui.seed_groups``): ``curve`` is their mean and xs/ys hold the
    # lowest and highest of them at each x, drawn faintly as a band, smoothing or not.
    band: bool = False
    # A run whose loss diverged (the engine's watch said so): its curve is drawn, but the
    # y axis fits the others, unless the view fits every value (``all_y``).
    outlier: bool = False


@dataclass
class DotLayer:
    """Braille dots for one layer of the plot, and which curve last lit each cell."""

    width: int
    height: int
    mask: list[int] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mask = [0] * (self.width * self.height)
        self.owner = [-1] * (self.width * self.height)

    def run(self, x: int, top: int, bottom: int, owner: int) -> None:
        """Light the dots of dot column `x` from row `top` down to row `bottom`, clipped."""
        top, bottom = max(top, 0), min(bottom, self.height * 4 - 1)
        bits = DOT_BITS[x & 1]
        base = x >> 1
        for y in range(top, bottom + 1):
            cell = (y >> 2) * self.width + base
            self.mask[cell] |= bits[y & 3]
            self.owner[cell] = owner

    def line(self, x0: int, y0: int, x1: int, y1: int, owner: int) -> None:
        """A straight line between two dots (x0 < x1), one run per dot column."""
        for x in range(x0, x1 + 1):
            y_here = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            y_next = y0 + (y1 - y0) * min(x + 1 - x0, x1 - x0) / (x1 - x0)
            lo, hi = sorted((round(y_here), round(y_next)))
            self.run(x, lo, max(lo, hi - (x < x1)), owner)


class ChartLayout:
    """Lays out one frame of a LossChart as strips; built once per state and size."""

    def __init__(self, chart: LossChart, width: int, height: int) -> None:
        self.chart = chart
        self.width, self.height = width, height
        self.base = chart.rich_style
        self.gutter = GUTTER if width >= MIN_WIDTH_FOR_GUTTER else 0
        self.plot_w, self.plot_h = width - self.gutter, height - 2
        self.cells = [[" "] * width for _ in range(height)]
        self.styles = [[self.base] * width for _ in range(height)]
        # Where the x range went (None until laid out): the widget maps the mouse by it.
        self.frame: PlotFrame | None = None
        self.x_labels: list[tuple[int, int]] = []  # (start, end) of each x tick's label

    def strips(self) -> list[Strip]:
        """The chart's lines, or a centred note when there is nothing to draw."""
        if self.width <= 0 or self.height <= 0:
            return []
        chart = self.chart
        # Drawn in the order given, later series on top: the app passes ancestors, the
        # selected run, then its forks, so a fork stays visible where it meets its parent.
        order = list(range(len(chart.series)))
        xs = {i: _xs_for(chart.series[i]) for i in order}
        ranges = [(x[0], x[-1]) for x in xs.values() if x]
        if not ranges:
            return self._note("no metrics yet")
        x_lo, x_hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
        if x_hi <= x_lo:
            x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
        if chart.window is not None:  # zoomed: the window, whatever the data spans
            x_lo, x_hi = chart.window
        elif chart.live:
            x_hi = chart.live_x_end(x_lo, x_hi)
        self.frame = PlotFrame(x_lo, x_hi, self.gutter, max(self.plot_w, 1))
        legend = self._legend(order)  # one line when the plot has no rows to give
        if self.plot_h < 1 or self.plot_w < 1:
            return legend + [Strip.blank(self.width, self.base)] * (self.height - 1)
        dot_w = self.plot_w * 2
        main: dict[int, Buckets] = {}
        faint: dict[int, Buckets] = {}
        # Raw points (faint) only for the selected run, or a lone curve: with forks or a
        # sweep overlaid, the others' raw clouds would bury the curves being compared.
        emphasized = {i for i in order if chart.series[i].emphasis}
        if not emphasized and len(order) == 1:
            emphasized = set(order)
        for i in order:
            smooth, raw = chart.curves(i)
            curve = chart.series[i].curve
            curve_xs = curve[0] if curve is not None and raw is not None else xs[i]
            main[i] = self._buckets(curve_xs, smooth, x_lo, x_hi, dot_w)
            if raw is not None and (i in emphasized or chart.series[i].band):
                faint[i] = self._buckets(xs[i], raw, x_lo, x_hi, dot_w)
        # y fits the curves, and the bands around the groups' means; but for all_y, not
        # the curves of runs that diverged, nor values far outside the rest
        drawn = list(main)
        values = self._values(main, faint, drawn)
        if not values:
            return self._note("no positive values" if chart.log_y else "no finite values")
        self._give_rows(len(legend) - 1)
        if chart.view.all_y:
            y_lo, y_hi = min(values), max(values)
        else:
            sane = [i for i in drawn if not chart.series[i].outlier]
            fitted = (values if len(sane) == len(drawn)  # (no curve of a diverged run)
                      else self._values(main, faint, sane) or values)
            y_lo, y_hi = inlier_range(fitted) or (min(fitted), max(fitted))
        off_chart = min(values) < y_lo or max(values) > y_hi
        pad = (y_hi - y_lo) * 0.05 or max(abs(y_lo) * 0.05, 0.5)
        y_lo, y_hi = y_lo - pad, y_hi + pad
        if chart.live:
            y_lo, y_hi = snap_outward(y_lo, y_hi, LIVE_Y_STEPS)
        raw_layer = DotLayer(self.plot_w, self.plot_h)
        main_layer = DotLayer(self.plot_w, self.plot_h)
        for i in order:
            if i in faint:
                self._plot(raw_layer, faint[i], i, y_lo, y_hi)
            self._plot(main_layer, main[i], i, y_lo, y_hi)
        self._compose_plot(raw_layer, main_layer, order)
        self._markers(x_lo, x_hi)
        if off_chart:  # said over the plot's top right, as a label is
            note = OFF_CHART[: self.plot_w]
            self._write(1, self.width - len(note), note, self.base + Style(color="yellow"))
        self._y_axis(y_lo, y_hi)
        self._x_axis(x_lo, x_hi)
        self._cursor()
        return legend + [self._row_strip(r) for r in range(1, self.height)]

    def _values(self, main: dict[int, Buckets], faint: dict[int, Buckets],
                indices: list[int]) -> list[float]:
        """Every value the curves (a band: its faint layer) of ``indices`` draw."""
        layers = (faint[i] if self.chart.series[i].band else main[i] for i in indices)
        return [v for buckets, _ in layers for mm in buckets if mm is not None for v in mm]

    def _buckets(
        self, xs: Sequence[float], ys: list[float | None], x_lo: float, x_hi: float, cols: int
    ) -> Buckets:
        log_y = self.chart.log_y
        buckets, gaps = downsample_minmax_gaps(xs, ys, x_lo, x_hi, cols, positive_only=log_y)
        if log_y:
            log10 = math.log10  # positive_only left no value <= 0
            buckets = [None if b is None else (log10(b[0]), log10(b[1])) for b in buckets]
        return buckets, gaps

    def _plot(
        self,
        layer: DotLayer,
        data: Buckets,
        owner: int,
        y_lo: float,
        y_hi: float,
    ) -> None:
        """Draw one curve: a vertical run per dot column, joined to the previous column."""
        buckets, gaps = data
        plot_h = self.plot_h
        prev: tuple[int, int, int] | None = None
        for x, mm in enumerate(buckets):
            if mm is None:
                if gaps[x]:
                    prev = None
                continue
            top, bottom = dot_row(mm[1], y_lo, y_hi, plot_h), dot_row(mm[0], y_lo, y_hi, plot_h)
            if prev is not None and prev[0] == x - 1:
                # adjacent: stretch this run to touch the previous one, so the line holds
                layer.run(x, min(top, prev[2]), max(bottom, prev[1]), owner)
            else:
                if prev is not None:  # sparse points: a straight line across empty columns
                    px, ptop, pbottom = prev
                    layer.line(px, (ptop + pbottom) // 2, x, (top + bottom) // 2, owner)
                layer.run(x, top, bottom, owner)
            prev = (x, top, bottom)

    def _style(self, index: int) -> Style:
        series = self.chart.series[index]
        colour = series.style or PALETTE[index % len(PALETTE)]
        style = self.base + Style.parse(colour)
        return style + Style(bold=True) if series.emphasis else style

    def _compose_plot(self, raw: DotLayer, main: DotLayer, order: list[int]) -> None:
        styles = {i: self._style(i) for i in order}
        faint = {i: s + DIM for i, s in styles.items()}
        for r in range(self.plot_h):
            row, row_styles = self.cells[r + 1], self.styles[r + 1]
            for c in range(self.plot_w):
                cell = r * self.plot_w + c
                if main.mask[cell]:
                    row[self.gutter + c] = chr(0x2800 + main.mask[cell])
                    row_styles[self.gutter + c] = styles[main.owner[cell]]
                elif raw.mask[cell]:
                    row[self.gutter + c] = chr(0x2800 + raw.mask[cell])
                    row_styles[self.gutter + c] = faint[raw.owner[cell]]

    def _markers(self, x_lo: float, x_hi: float) -> None:
        """A dotted column at each marker's x; the labels stacked on the top plot rows so
        that none overlaps another (``place_labels``), shortened or left out if need be."""
        marker_style = self.base + Style(color="bright_black")
        assert self.frame is not None
        labels = []
        for x, label in self.chart.markers:
            if not x_lo <= x <= x_hi:
                continue
            column = self.frame.column_of(x)
            for r in range(1, self.plot_h + 1):
                if self.cells[r][self.gutter + column] == " ":
                    self.cells[r][self.gutter + column] = "┊"
                    self.styles[r][self.gutter + column] = marker_style
            labels.append(Label(column, label_texts(label)))
        rows = min(LABEL_ROWS, max(1, self.plot_h // 4))
        for placed in place_labels(labels, self.plot_w, rows):
            # A label is written over what it covers: read whole, or not at all.
            self._write(1 + placed.row, self.gutter + placed.start, placed.text, marker_style)

    def _y_axis(self, y_lo: float, y_hi: float) -> None:
        if not self.gutter:
            return
        axis_style = self.base + Style(color="bright_black")
        for r in range(1, self.plot_h + 1):
            self.cells[r][GUTTER - 1], self.styles[r][GUTTER - 1] = "│", axis_style
        n = max(2, self.plot_h // 3)
        if self.chart.log_y:
            values = log_ticks(y_lo, y_hi, n)
            ticks = [(math.log10(v), format_log_tick(v)) for v in values if v > 0]
        else:
            values = nice_ticks(y_lo, y_hi, n)
            step = values[1] - values[0] if len(values) > 1 else y_hi - y_lo
            ticks = [(v, format_tick(v, step)) for v in values]
        last_row = -2
        for position, label in ticks:
            row = 1 + dot_row(position, y_lo, y_hi, self.plot_h) // 4  # where its line is
            if not 1 <= row <= self.plot_h or abs(row - last_row) < 2:
                continue  # out of the plot, or crowding the label before
            self._write(row, 0, label[: GUTTER - 1].rjust(GUTTER - 1), self.base)
            self.cells[row][GUTTER - 1] = "┤"
            last_row = row

    def _x_axis(self, x_lo: float, x_hi: float) -> None:
        row = self.height - 1
        if self.gutter:
            self._write(row, 0, self.chart.x_label[: GUTTER - 1], self.base + DIM)
        free_from = self.gutter
        for tick, label in axis_ticks(self.chart.x_label, x_lo, x_hi, max(2, self.plot_w // 10)):
            offset = int((tick - x_lo) / (x_hi - x_lo) * self.plot_w)
            col = self.gutter + min(offset, self.plot_w - 1)
            start = min(col - len(label) // 2, self.width - len(label))
            if start < free_from:
                continue
            self._write(row, start, label, self.base)
            self.x_labels.append((start, start + len(label)))
            free_from = start + len(label) + 1

    def _write(self, row: int, col: int, text: str, style: Style) -> None:
        for offset, char in enumerate(text[: max(self.width - col, 0)]):
            self.cells[row][col + offset], self.styles[row][col + offset] = char, style

    def _legend(self, order: list[int]) -> list[Strip]:
        """The legend's lines: each curve (the emphasised first) with its colour and last
        value (with the cursor shown: its value there), on as many lines as it needs up
        to a third of the chart's height, so that a whole sweep overlaid is named. The
        plot gives up the extra lines (``_give_rows``): a legend never covers it."""
        emphasised = [i for i in order if self.chart.series[i].emphasis]
        cursor = self._shown_cursor()
        entries = []
        for i in emphasised + [i for i in order if i not in emphasised]:
            name = self.chart.series[i].label
            if cursor is None:
                smooth, _ = self.chart.curves(i)
                last = next((v for v in reversed(smooth) if v is not None), None)
                entries.append(LegendEntry(self._style(i), name, format_value(last)))
            else:
                value = self._value_at(i, cursor)
                entries.append(LegendEntry(self._style(i), name, value, self._style(i)))
        most = max(1, (self.height - 2) // LEGEND_SHARE)
        head = "" if cursor is None else f"{self.chart.x_label} {self._x_text(cursor)}".strip()
        return legend_lines(entries, self.width, most, self.base, head)

    def _shown_cursor(self) -> float | None:
        """The cursor's x, if it is set and inside the drawn range."""
        cursor, frame = self.chart.cursor, self.frame
        return cursor if cursor is not None and frame and frame.contains(cursor) else None

    def _value_at(self, index: int, x: float) -> str:
        """Curve ``index``'s value at the last point at or before ``x``, as drawn: smoothed
        when smoothing, else the point's (a range where a bucket holds several)."""
        series = self.chart.series[index]
        smooth, raw = self.chart.curves(index)
        curve = series.curve
        xs = curve[0] if curve is not None and raw is not None else _xs_for(series)
        # A hair over half a bucket: a bucket that starts on the cursor is not lost to rounding.
        at = self._cursor_x(x) + series.x_half * (1 + 1e-6)
        found = value_at(xs, smooth, at)
        if found is None:
            return "-"
        lo, hi = found
        text = format_value(lo) if lo == hi else f"{format_value(lo)}…{format_value(hi)}"
        spread = value_at(_xs_for(series), raw, at) if series.band and raw is not None else None
        if spread is not None:  # a group's mean, and its runs' lowest and highest there
            text += f" ({format_value(spread[0])}…{format_value(spread[1])})"
        return text

    def _cursor_x(self, x: float) -> float:
        """The x the cursor reads at: on the step axis the whole step it is on."""
        return math.floor(x) if self.chart.x_label == "step" else x

    def _x_text(self, x: float) -> str:
        """The cursor's x as written: a whole step, a duration or a time of day."""
        frame = self.frame
        return x_text(self.chart.x_label, x, (frame.x_hi - frame.x_lo) / frame.width if frame
                      else 1.0)

    def _cursor(self) -> None:
        """The cursor's column in the plot, and its x on the x axis (reversed)."""
        cursor, frame = self._shown_cursor(), self.frame
        if cursor is None or frame is None or self.plot_w < 1:
            return
        col = self.gutter + frame.column_of(cursor)
        style = self.base + CURSOR
        for r in range(1, self.plot_h + 1):
            if self.cells[r][col] in (" ", "┊"):
                self.cells[r][col], self.styles[r][col] = "│", style
        text = self._x_text(cursor)
        start = max(min(col - len(text) // 2, self.width - len(text)), 0)
        row, end = self.height - 1, start + len(text)
        for a, b in self.x_labels:  # a tick label it would cut is left out whole
            if a <= end and start <= b:
                self._write(row, a, " " * (b - a), self.base)
        self._write(row, start, text, self.base + Style(reverse=True))

    def _give_rows(self, rows: int) -> None:
        """Hand the chart's top ``rows`` more to the legend: the plot is that much shorter."""
        self.height -= rows
        self.plot_h -= rows
        self.cells, self.styles = self.cells[rows:], self.styles[rows:]

    def _row_strip(self, row: int) -> Strip:
        return cells_strip(self.cells[row], self.styles[row], self.width)

    def _note(self, text: str) -> list[Strip]:
        strips = [Strip.blank(self.width, self.base)] * self.height
        line = Strip([Segment(text.center(self.width), self.base + DIM)])
        strips[self.height // 2] = line.crop_extend(0, self.width, self.base)
        return strips


def _xs_for(series: Series) -> Sequence[float]:
    """The series' xs, cut to the length of its ys when a writer got ahead."""
    n = len(series.ys)
    return series.xs if len(series.xs) <= n else series.xs[:n]
