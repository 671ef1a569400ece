"""The chart's data: each shown run's metric at screen resolution, asked of the daemon.

The TUI never holds a run's whole history. For every run on the chart it asks
for a ``series`` view: min/max per bucket, the debiased EMA at each bucket
(computed by the daemon over every point) and the latest points exact. Twice
as many buckets as the chart has dot columns, so the chart's own min/max per
column stays exact wherever the runs' ranges fall. A zoomed chart asks for its
window only, at the same resolution: a thousand steps of a run of a million are
drawn from the points themselves, not from the whole run's buckets. A live
run's view is asked again at most every two seconds (the app's pace for a live
curve), and only when points have come in.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field, replace

from engine.client.events import SeriesView
from tui.chart_view import ChartView
from tui.chart_zoom import Extent
from tui.widgets.loss_chart import Series

REFRESH_S = 2.0


@dataclass(frozen=True)
class ViewRequest:
    """What a view depends on: a new one is asked for when any of it changes."""

    key: str
    buckets: int
    axis: str
    smoothing: float
    window: Extent | None = None  # the x range (zoomed); None: the whole run

    @classmethod
    def of(
        cls, view: ChartView, buckets: int, keys: Collection[str], window: Extent | None = None
    ) -> ViewRequest:
        """What the chart needs to show ``view`` with ``buckets`` buckets across, for runs
        that logged ``keys``, over ``window`` (None: each run's whole range)."""
        return cls(view.metric_for(keys), buckets, view.axis, view.smoothing, window)


# Asks the daemon for one run's view: (run, key, buckets, axis, smoothing or None,
# window or None).
FetchSeries = Callable[
    [str, str, int, str, float | None, Extent | None], Awaitable[SeriesView]
]


@dataclass
class _View:
    request: ViewRequest
    data: SeriesView
    fetched: float
    stale: bool = False
    # The chart's lists made from ``data``, made once: the same lists at every draw let
    # the chart see that nothing changed (it keys its smoothing on them).
    curve: Series | None = None


@dataclass
class ChartFeed:
    """Views of the runs on the chart, kept fresh through ``fetch_series`` (a daemon request)."""

    fetch_series: FetchSeries
    clock: Callable[[], float] = time.monotonic
    views: dict[str, _View] = field(default_factory=dict)

    def points_arrived(self, run_id: str) -> None:
        """New points of ``run_id`` were stored: its view is behind."""
        view = self.views.get(run_id)
        if view is not None:
            view.stale = True

    def due(self, run_ids: Iterable[str], request: ViewRequest) -> list[str]:
        """The runs whose view is missing, asked differently, or stale for REFRESH_S."""
        now = self.clock()
        return [
            run_id for run_id in run_ids
            if (view := self.views.get(run_id)) is None
            or view.request != request
            or (view.stale and now - view.fetched >= REFRESH_S)
        ]

    async def fetch(self, run_id: str, request: ViewRequest) -> bool:
        """Ask for one run's view; True if it differs from the one held."""
        data = await self.fetch_series(
            run_id, request.key, request.buckets, request.axis, request.smoothing or None,
            request.window,
        )
        old = self.views.get(run_id)
        if old is not None and old.request == request and old.data == data:
            old.fetched, old.stale = self.clock(), False  # kept, with the lists made from it
            return False
        self.views[run_id] = _View(request, data, self.clock())
        return old is None or old.data != data

    def extent(self, run_ids: Iterable[str], key: str, axis: str) -> Extent | None:
        """The x range that the views of ``run_ids`` (of metric ``key`` along ``axis``)
        span together, whatever window they were asked for; None before any has points."""
        spans = [
            view.data.extent for run_id in run_ids
            if (view := self.views.get(run_id)) is not None and view.data.extent is not None
            and view.request.key == key and view.request.axis == axis
        ]
        if not spans:
            return None
        return min(lo for lo, _ in spans), max(hi for _, hi in spans)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the views of runs no longer shown."""
        kept = set(keep)
        for run_id in [r for r in self.views if r not in kept]:
            del self.views[run_id]

    def series(
        self, run_id: str, label: str, emphasis: bool, style: str | None = None,
        outlier: bool = False,
    ) -> Series | None:
        """The chart's curve of one run from its view (None before the first view);
        ``style``: its colour (None: the chart's palette by position); ``outlier``: left
        out of the y axis's range (``Series.outlier``)."""
        view = self.views.get(run_id)
        if view is None or not view.data.buckets:
            return None
        if view.curve is None:
            view.curve = series_from_view(view.data, label, emphasis, view.request.smoothing > 0)
        # A new label, emphasis or colour shares the lists it was made with.
        return replace(view.curve, label=label, emphasis=emphasis, style=style, run_id=run_id,
                       outlier=outlier)


def series_from_view(view: SeriesView, label: str, emphasis: bool, smoothed: bool) -> Series:
    """A chart Series: each bucket's min and max as raw points, its EMA as the curve."""
    if view.range is None or view.width is None:  # no points yet: nothing to draw
        return Series(label, [], [], emphasis=emphasis)
    lo, width = view.range[0], view.width
    buckets = view.buckets
    xs: list[float] = []
    ys: list[float | None] = []
    curve_xs: list[float] = []
    curve_ys: list[float | None] = []
    for b, vmin, vmax, ema, _count in buckets:
        x = lo + (b + 0.5) * width
        xs += [x, x]
        ys += [vmin, vmax]
        if ema is not None:
            curve_xs.append(x)
            curve_ys.append(ema)
    if not smoothed:
        return Series(label, xs, ys, emphasis=emphasis, x_half=width / 2)
    return Series(label, xs, ys, emphasis=emphasis, curve=(curve_xs, curve_ys), x_half=width / 2)
