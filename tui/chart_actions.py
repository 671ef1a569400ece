"""The app's keys and mouse on the chart: zoom and pan along x, and a cursor column
that reads out each shown run's value at its x.

The zoom (an ``XZoom``) and the cursor (an x, or None) are plain values held
here; the app draws the chart by them (``chart_window``, ``cursor``) and asks
the daemon for the window's points at the chart's resolution.
"""

from __future__ import annotations

from textual import on

from tui.chart_feed import ChartFeed
from tui.chart_zoom import PAN_SHARE, WHEEL_FACTOR, ZOOM_FACTOR, Extent, XZoom
from tui.compare import Overlaid
from tui.view_actions import ViewActions
from tui.widgets.loss_chart import LossChart


class ChartActions(ViewActions):
    """Zoom, pan and cursor keys, the wheel and clicks on the plot."""

    feed: ChartFeed
    shown: tuple[Overlaid, ...]
    zoom = XZoom()  # replaced, never changed in place
    cursor: float | None = None

    def chart_changed(self) -> None:
        """The zoom or the cursor moved: ask for what the window lacks, draw now."""
        raise NotImplementedError

    def chart_extent(self) -> Extent | None:
        """The x range of the shown runs' metric, as the daemon last told it."""
        view = self.state.view
        key = view.metric_for(self.shown_keys())
        return self.feed.extent((o.run_id for o in self.shown), key, view.axis)

    def chart_window(self) -> Extent | None:
        """The x range to draw and to ask for (None: the whole runs)."""
        return self.zoom.window(self.chart_extent())

    def _set_zoom(self, zoom: XZoom) -> None:
        if zoom != self.zoom:
            self.zoom = zoom
            self.query_one(LossChart).border_title = zoom.describe(self.state.view.axis)
            self.chart_changed()

    def action_zoom_last(self) -> None:
        extent = self.chart_extent()
        zoom = self.zoom.next_last(extent, self.state.view.axis)
        if zoom.whole and self.zoom.whole and extent is not None:
            self.notify("these runs are shorter than the first 'last N' window: "
                        "+ zooms in around the cursor")
        self._set_zoom(zoom)

    def action_zoom_in(self) -> None:
        self._set_zoom(self.zoom.zoomed(ZOOM_FACTOR, self.cursor, self.chart_extent()))

    def action_zoom_out(self) -> None:
        self._set_zoom(self.zoom.zoomed(1 / ZOOM_FACTOR, self.cursor, self.chart_extent()))

    def action_pan_left(self) -> None:
        self._set_zoom(self.zoom.panned(-PAN_SHARE, self.chart_extent()))

    def action_pan_right(self) -> None:
        self._set_zoom(self.zoom.panned(PAN_SHARE, self.chart_extent()))

    def action_zoom_reset(self) -> None:
        changed = self.cursor is not None
        self.cursor = None
        if self.zoom.whole and changed:
            self.chart_changed()
        self._set_zoom(XZoom())

    def action_chart_cursor_left(self) -> None:
        self._move_cursor(-1)

    def action_chart_cursor_right(self) -> None:
        self._move_cursor(1)

    def _move_cursor(self, columns: int) -> None:
        """One plot column along; the first press puts the cursor on the data's end."""
        frame = self.query_one(LossChart).frame
        if frame is None:
            return
        if self.cursor is None or not frame.contains(self.cursor):
            extent = self.chart_extent()
            end = frame.x_hi if extent is None else min(extent[1], frame.x_hi)
            self.cursor = frame.x_at(frame.column_of(end))
        else:
            self.cursor = frame.x_at(frame.column_of(self.cursor) + columns)
        self.chart_changed()

    def action_x_axis(self) -> None:
        # A window of steps means nothing in wall time, and the other way round.
        self.zoom, self.cursor = XZoom(), None
        self.query_one(LossChart).border_title = ""
        super().action_x_axis()

    @on(LossChart.WheelTurned)
    def _wheel_turned(self, event: LossChart.WheelTurned) -> None:
        factor = WHEEL_FACTOR if event.toward else 1 / WHEEL_FACTOR
        self._set_zoom(self.zoom.zoomed(factor, event.x, self.chart_extent()))

    @on(LossChart.CursorPlaced)
    def _cursor_placed(self, event: LossChart.CursorPlaced) -> None:
        self.cursor = event.x
        self.chart_changed()
