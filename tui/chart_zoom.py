"""The chart's x range: the whole run, the last N steps (following the end), or a window
zoomed and panned by hand; and where an x falls among the plot's columns.

Pure maths, no Textual: the app holds one ``XZoom`` and replaces it on a key or a wheel
turn; the chart draws the window it resolves to, and the chart feed asks the daemon for
that window at the chart's resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tui.time_axis import format_duration, x_text

Extent = tuple[float, float]

# What ``z`` steps through, after the whole run: steps, or seconds on a time axis.
LAST_SPANS = (1_000.0, 10_000.0, 100_000.0)
LAST_TIMES = (600.0, 3_600.0, 21_600.0)  # 10 minutes, an hour, six hours
# The narrowest window: a few columns a step is all the detail there is to show.
MIN_SPAN = 16.0
ZOOM_FACTOR = 2.0  # a key halves or doubles the window
WHEEL_FACTOR = 1.25  # a wheel notch: gentler, a trackpad sends many of them
PAN_SHARE = 0.25  # a pan moves the window by this share of its span
# A window that follows the end moves in steps of this share of its span: every move
# asks the daemon for a new window and repaints the whole chart (~6 KB at 120x40), so a
# run of 100 steps a second in its last 1k moves it every 2.5 s, not at every point.
TAIL_SHARE = 0.25


@dataclass(frozen=True)
class XZoom:
    """The x range asked for: everything (``span`` None), or ``span`` wide starting at
    ``lo``, or, with ``lo`` None, ending at the data's end and following it (a tail)."""

    span: float | None = None
    lo: float | None = None

    @property
    def whole(self) -> bool:
        """Whether the whole run is shown."""
        return self.span is None

    @property
    def following(self) -> bool:
        """Whether the window follows the end of the data as points arrive."""
        return self.span is not None and self.lo is None

    def window(self, extent: Extent | None) -> Extent | None:
        """The (lo, hi) to draw for data spanning ``extent``; None: the whole extent.

        A following window ends at the first multiple of TAIL_SHARE of its span at or
        past the data's end, so new points move it in jumps, not at every step.
        """
        if self.span is None or extent is None:
            return None
        if self.lo is not None:
            return self.lo, self.lo + self.span
        if self.span >= extent[1] - extent[0]:
            return None  # the run is shorter than the tail: all of it
        quantum = self.span * TAIL_SHARE
        hi = math.ceil(extent[1] / quantum) * quantum
        return hi - self.span, hi

    def zoomed(self, factor: float, around: float | None, extent: Extent | None) -> XZoom:
        """The window ``factor`` times narrower (below 1: wider), keeping ``around`` (an x;
        None: the window's end) where it is on screen."""
        if extent is None or extent[1] <= extent[0]:
            return self
        lo, hi = self.window(extent) or extent
        x = hi if around is None or not lo <= around <= hi else around
        span = max((hi - lo) / factor, MIN_SPAN)
        return _fitted(x - (x - lo) * span / (hi - lo), span, extent)

    def panned(self, share: float, extent: Extent | None) -> XZoom:
        """The window moved by ``share`` of its span (negative: back); the whole run stays."""
        window = self.window(extent)
        if window is None or extent is None:
            return self
        span = window[1] - window[0]
        return _fitted(window[0] + share * span, span, extent)

    def next_last(self, extent: Extent | None, axis: str = "step") -> XZoom:
        """The next 'last N' of LAST_SPANS (on a time axis LAST_TIMES) shorter than the
        data, after them the whole run."""
        width = 0.0 if extent is None else extent[1] - extent[0]
        spans = [s for s in (LAST_SPANS if axis == "step" else LAST_TIMES) if s < width]
        if self.following and self.span in spans:
            following = spans[spans.index(self.span) + 1:]
            return XZoom(following[0]) if following else XZoom()
        return XZoom(spans[0]) if spans else XZoom()

    def describe(self, axis: str) -> str:
        """A few words for the status line: '', 'last 1k steps', 'steps 2k to 3k', 'last 1h'."""
        if self.span is None:
            return ""
        if axis != "step":
            if self.lo is None:
                return f"last {format_duration(self.span)}"
            ends = [x_text(axis, x, self.span / 100) for x in (self.lo, self.lo + self.span)]
            return "zoomed, {} to {}".format(*ends)
        if self.lo is None:
            return f"last {_short(self.span)} steps"
        return f"steps {_short(self.lo)} to {_short(self.lo + self.span)}"


def _short(value: float) -> str:
    """A number in a few characters: 12.5, 207, 1k, 2.5k, 1.25M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.4g}{suffix}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _fitted(lo: float, span: float, extent: Extent) -> XZoom:
    """A window of ``span`` from ``lo``, moved inside ``extent``: the whole run when it
    holds all of it, a following tail when it reaches the end."""
    if span >= (extent[1] - extent[0]) * (1 - 1e-9):  # back out as far as it went in
        return XZoom()
    lo = max(lo, extent[0])
    if lo + span >= extent[1]:
        return XZoom(span)
    return XZoom(span, lo)


@dataclass(frozen=True)
class PlotFrame:
    """Where a drawn chart put its x range: columns ``left`` to ``left + width - 1`` of
    the widget's content show [x_lo, x_hi]. The mouse and the cursor keys go through it."""

    x_lo: float
    x_hi: float
    left: int
    width: int

    def column_of(self, x: float) -> int:
        """The plot column (0-based, clamped) that ``x`` falls in."""
        share = (x - self.x_lo) / (self.x_hi - self.x_lo)
        return min(max(int(share * self.width), 0), self.width - 1)

    def x_at(self, column: int) -> float:
        """The x at the middle of plot column ``column`` (clamped to the plot)."""
        column = min(max(column, 0), self.width - 1)
        return self.x_lo + (column + 0.5) * (self.x_hi - self.x_lo) / self.width

    def x_under(self, content_x: int) -> float | None:
        """The x under a content column (a mouse's), or None off the plot (the y axis)."""
        column = content_x - self.left
        return self.x_at(column) if 0 <= column < self.width else None

    def contains(self, x: float) -> bool:
        """Whether ``x`` is inside the drawn range."""
        return self.x_lo <= x <= self.x_hi
