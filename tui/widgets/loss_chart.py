"""The loss chart: several runs' curves in braille, with axes, a legend and fork markers.

The widget only draws the plain data handed to `set_data`, as its ``ChartView``
says (smoothing, log scale). The whole chart is laid out once per (size, data,
view) and kept as strips (``chart_layout``), so a repaint costs nothing;
smoothing is cached per series and extended in place when a live run appends points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from tui.chart_math import DebiasedEma, clean, nice_ceiling
from tui.chart_view import ChartView
from tui.chart_zoom import Extent, PlotFrame
from tui.widgets.chart_layout import GUTTER, ChartLayout, Series
from tui.widgets.line_diff import changed_regions

__all__ = ["GUTTER", "LossChart", "Series"]

# When a live curve reaches the end of its x axis, the axis grows to this many times
# the curve's extent (then to a round number): every such step redraws the whole chart.
LIVE_X_HEADROOM = 1.5


@dataclass
class _Smoothed:
    """A series' cleaned and smoothed values, valid while its ys begin with `source`'s."""

    source: Sequence[float | None]
    raw: list[float | None]
    ema: DebiasedEma
    smooth: list[float | None]
    # A curve smoothed elsewhere (``Series.curve``), cleaned once.
    curve_source: Sequence[float | None] | None = None
    curve: list[float | None] = field(default_factory=list)


class LossChart(Widget):
    """Loss curves of several runs, TensorBoard-smoothed, in one braille chart."""

    @dataclass
    class WheelTurned(Message):
        """The mouse wheel turned over the plot at ``x``: ``toward`` zooms in."""

        x: float
        toward: bool

    @dataclass
    class CursorPlaced(Message):
        """The plot was clicked at ``x``: the cursor goes there."""

        x: float

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 5; }
    """

    # Only its smoothing and log scale matter here: the app picks the metric and axis.
    view: reactive[ChartView] = reactive(ChartView(smoothing=0.0))

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._series: list[Series] = []
        self._markers: list[tuple[float, str]] = []
        self._x_label = ""
        self._version = 0
        self._smoothed: dict[int, _Smoothed] = {}
        # Values cleaned or smoothed so far: a cache that hits adds nothing (tests count it).
        self.values_smoothed = 0
        self._live = False
        self._x_axis: tuple[float, float] | None = None  # a live chart's (start, end) of x
        self._strips: list[Strip] = []
        self._strips_key: tuple[object, ...] | None = None
        self._signature: tuple[object, ...] | None = None
        self._window: Extent | None = None
        self._cursor: float | None = None
        self._frame: PlotFrame | None = None

    @property
    def series(self) -> list[Series]:
        """The series drawn now (as last given to ``set_data``)."""
        return self._series

    @property
    def markers(self) -> list[tuple[float, str]]:
        """The (x, label) markers drawn now."""
        return self._markers

    @property
    def x_label(self) -> str:
        """What x is ("step" or "time"), written at the start of the x axis."""
        return self._x_label

    @property
    def window(self) -> Extent | None:
        """The x range drawn when zoomed; None: the data's whole range."""
        return self._window

    @property
    def cursor(self) -> float | None:
        """The x of the cursor column (None: no cursor)."""
        return self._cursor

    @property
    def frame(self) -> PlotFrame | None:
        """Where the last frame put its x range (None before one had a plot)."""
        return self._frame

    @property
    def live(self) -> bool:
        """Whether a shown run is training (the axes then move on a coarse grid)."""
        return self._live

    @property
    def smoothing(self) -> float:
        """The view's EMA weight (0: raw values)."""
        return self.view.smoothing

    @smoothing.setter
    def smoothing(self, weight: float) -> None:
        self.view = replace(self.view, smoothing=weight)

    @property
    def log_y(self) -> bool:
        """Whether y is drawn on a log scale."""
        return self.view.log_y

    @log_y.setter
    def log_y(self, log_y: bool) -> None:
        self.view = replace(self.view, log_y=log_y)

    def set_data(
        self,
        series: list[Series],
        markers: list[tuple[float, str]],
        x_label: str,
        live: bool = False,
        window: Extent | None = None,
        cursor: float | None = None,
    ) -> None:
        """Show `series`, with a marker at each (x, label) of `markers`.

        Pass the same growing lists again as points arrive: smoothing then only runs over
        the new points. Lists must only be appended to, never edited in place. The same
        lists at the same lengths draw nothing. `live` (a shown run is training) keeps the
        axes on a coarse grid, so new points only repaint the cells they light. `window`:
        the x range to draw (zoomed; None: all the data); `cursor`: the x of the cursor
        column, read out in the legend (None: none).
        """
        signature = (
            tuple((s.label, id(s.xs), id(s.ys), len(s.ys), s.style, s.emphasis, s.band)
                  for s in series),
            tuple(markers),
            x_label,
            live,
            window,
            cursor,
        )
        if signature == self._signature:
            return
        self._signature = signature
        if [s.label for s in series] != [s.label for s in self._series] or (
            x_label != self._x_label
        ):
            self._strips_key = None  # other runs: nearly every cell changes, skip the diff
            self._x_axis = None
        self._series = list(series)
        self._markers = list(markers)
        self._x_label = x_label
        self._live = live
        self._window, self._cursor = window, cursor
        self._version += 1
        self._repaint_changes()

    def _key(self, width: int, height: int) -> tuple[object, ...]:
        lengths = tuple(len(s.ys) for s in self._series)
        return (width, height, self.smoothing, self.log_y, self.view.all_y, self._version,
                lengths)

    def _repaint_changes(self) -> None:
        """Lay the chart out now and refresh only the cells that differ from the last frame."""
        width, height = self.content_size
        old_key = self._strips_key
        if old_key is None or width <= 0 or height <= 0 or old_key[:5] != self._key(
            width, height
        )[:5]:
            self.refresh()  # never drawn, or drawn at another size or scale: all of it
            return
        strips = self._lay_out(width, height)
        regions = changed_regions(self._strips, strips)
        self._strips, self._strips_key = strips, self._key(width, height)
        if regions:
            self.refresh(*regions)

    def render_line(self, y: int) -> Strip:
        """One line of the chart, from the strips laid out for the current state."""
        width, height = self.content_size  # inside any border or padding
        key = self._key(width, height)
        if key != self._strips_key:
            self._strips = self._lay_out(width, height)
            self._strips_key = key
        if 0 <= y < len(self._strips):
            return self._strips[y]
        return Strip.blank(width, self.rich_style)

    def _lay_out(self, width: int, height: int) -> list[Strip]:
        layout = ChartLayout(self, width, height)
        strips = layout.strips()
        self._frame = layout.frame
        return strips

    def _plot_x(self, event: events.MouseEvent) -> float | None:
        """The x under the mouse, or None off the plot (the y axis, the border)."""
        offset = event.get_content_offset(self)
        frame = self._frame
        return None if offset is None or frame is None else frame.x_under(offset.x)

    def _wheel(self, event: events.MouseEvent, toward: bool) -> None:
        x = self._plot_x(event)
        if x is not None:
            event.stop()  # the chart's own: no container scrolls underneath
            self.post_message(self.WheelTurned(x, toward))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        """Wheel up over the plot: zoom in around the pointer."""
        self._wheel(event, toward=True)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        """Wheel down over the plot: zoom out around the pointer."""
        self._wheel(event, toward=False)

    def on_click(self, event: events.Click) -> None:
        """A click on the plot puts the cursor there."""
        x = self._plot_x(event)
        if x is not None:
            event.stop()
            self.post_message(self.CursorPlaced(x))

    def live_x_end(self, x_lo: float, x_max: float) -> float:
        """Where a live chart's x axis ends: kept until the curve passes it, then moved
        well ahead, so a young run (whose extent doubles in seconds) does not redraw the
        whole chart at every update."""
        axis = self._x_axis
        if axis is None or axis[0] != x_lo or not x_max <= axis[1]:
            axis = self._x_axis = (x_lo, x_lo + nice_ceiling((x_max - x_lo) * LIVE_X_HEADROOM))
        return axis[1]

    def curves(self, index: int) -> tuple[list[float | None], list[float | None] | None]:
        """Series `index`'s curve to draw, and its raw values to draw faintly (or None)."""
        series, weight = self._series[index], self.smoothing
        n = len(series.ys)
        cached = self._smoothed.get(index)
        if cached is None or not _extends(cached.source, len(cached.raw), series.ys):
            cached = self._smoothed[index] = _Smoothed(series.ys, [], DebiasedEma(weight), [])
        cached.source = series.ys
        if len(cached.raw) < n:
            self.values_smoothed += n - len(cached.raw)
            cached.raw.extend(clean(series.ys[len(cached.raw) : n]))
        if not weight and not series.band:
            return cached.raw, None
        if series.curve is not None:
            given = series.curve[1]
            if not _extends(cached.curve_source, len(cached.curve), given, whole=True):
                cached.curve_source, cached.curve = given, clean(given)
                self.values_smoothed += len(given)
            return cached.curve, cached.raw
        if cached.ema.weight != weight:
            cached.ema, cached.smooth = DebiasedEma(weight), []
        if len(cached.smooth) < n:
            self.values_smoothed += n - len(cached.smooth)
            cached.smooth.extend(cached.ema.extend(cached.raw[len(cached.smooth) : n]))
        return cached.smooth, cached.raw


def _extends(
    old: Sequence[float | None] | None, done: int, new: Sequence[float | None], whole: bool = False
) -> bool:
    """Whether the first ``done`` values worked out from ``old`` hold for ``new`` too.

    The same list (only ever appended to), or an equal copy of it: a caller that hands
    fresh lists of unchanged data still hits the cache. ``whole``: all of ``new``.
    """
    if old is None or done > len(new) or (whole and done != len(new)):
        return False
    return old is new or list(old[:done]) == list(new[:done])


