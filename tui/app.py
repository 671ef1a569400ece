"""The traintop Textual app: runs table, loss chart, GPU and host panels, logs.

Widgets render ``TuiState``; they never talk to the daemon. Events from the
daemon only mark the state dirty, and a 4 Hz timer redraws what changed. What
streams in (steps, losses, rates) is coalesced to once a second: the table
repaints only the cells whose text changed, the chart and the panels only the
cells that differ from their last frame. Over SSH, bytes are the cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import Input, RichLog, Static

from engine.client.client import EngineError, EngineUnavailable
from engine.client.events import ProtocolError
from engine.common.format import shown
from engine.common.protocol import MAX_BUCKETS as MAX_VIEW_BUCKETS
from engine.common.runs import ATTACHED_OUTPUT
from tui import partial_updates
from tui.chart_actions import ChartActions
from tui.chart_feed import ChartFeed, ViewRequest
from tui.chart_view import ChartView
from tui.commands import ActionCommands
from tui.compare import COMPARE_PALETTE, Overlaid, chart_runs
from tui.connection import EngineLink, LogFollower
from tui.keys import bindings
from tui.seed_groups import BandCache, RunGroup, group_runs
from tui.state import TuiState
from tui.view_memory import ViewMemory
from tui.view_restore import ViewRestore
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.host_panel import HostPanel
from tui.widgets.loss_chart import GUTTER, LossChart, Series
from tui.widgets.quiet_footer import QuietFooter
from tui.widgets.runs_table import RunsTable

REFRESH_HZ = 4
STREAM_EVERY_S = 1.0  # table cells that move with training repaint at most this often
# A live curve at most this often: a loss curve read over minutes loses nothing, and
# each redraw of a young run's curve costs a few hundred bytes over SSH.
CHART_EVERY_S = 2.0
FOLLOW_AFTER_S = 0.05  # the chart follows the cursor once it has rested this long
COMPACT_BELOW = 110  # columns: narrower terminals get the compact runs table
NARROW_BELOW = 100  # columns: the chart takes the whole width, the panels go under it
SHORT_BELOW = 32  # lines: panels under the chart keep two lines each, the chart the rest
# A run's name in the chart's legend is cut to this: room for a three-axis sweep run's
# values (lr=1e-3 batch=16 dropout=0.1), whose last one tells it from its neighbour.
LEGEND_NAME = 30

HEAP_SETTLE_S = 2.0  # after connecting: the runs, their tails and the first frames are in


def _settle_heap() -> None:
    """Collect once, then leave what is alive now out of future full collections.

    With 500 runs loaded, a full collection walks every table cell, point list
    and cached strip, and took 70-120 ms on a busy two-core box: a key pressed
    meanwhile waits that long. Frozen objects are still freed by reference
    counting when they go; only cycles among them would stay.
    """
    gc.collect()
    gc.freeze()


class TraintopApp(ChartActions, ViewRestore):
    CSS_PATH = "app.tcss"
    TITLE = "traintop"
    BINDINGS: ClassVar[list[BindingType]] = bindings()  # type: ignore[assignment]
    COMMANDS = App.COMMANDS | {ActionCommands}

    def __init__(
        self,
        home: Path | None = None,
        readonly: bool = False,
        autostart: bool = True,
        demo: bool = False,
    ) -> None:
        """The app for the engine of state directory ``home`` (None: the default one)."""
        super().__init__()
        partial_updates.install()
        self.demo = demo
        self.readonly = readonly
        self.memory = ViewMemory(home)  # what the last session showed
        self.state = TuiState(smoothing=ChartView().smoothing)
        self.restore_chart_and_marks()
        self.link = EngineLink(
            home, self.state, self._set_banner, self._on_connected, autostart=autostart,
            on_runs=self._refresh_views,
        )
        self.logs = LogFollower(home, self._on_log_text)
        self._banner: str | None = None
        self._store_problem: str | None = None  # the engine cannot write its store: why
        self._status_text = ""
        self.feed = ChartFeed(self.link.series)
        self._fetching = False
        self.shown: tuple[Overlaid, ...] = ()  # the runs on the chart, as drawn
        self.bands = BandCache()  # the curves of groups of runs (``G``)
        self.chart_groups: list[RunGroup] = []  # those drawn now, of two runs or more
        self._chart_now = False  # the view changed (selection, metric, axis): draw at once
        self._values_at = self._chart_at = 0.0  # when streamed values were last drawn
        self._follow_timer: Timer | None = None
        self._moved_at = 0.0  # when the cursor last moved

    # -- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("traintop — connecting to the engine…", id="status")
        yield Input(placeholder="filter runs: words (name, state, #tag), lr<1e-3, -word leaves out",
                    id="filter")
        yield RunsTable(id="runs")
        with Horizontal(id="middle"):
            yield LossChart(id="chart")
            with Vertical(id="side"):
                yield GpuPanel(id="gpus")
                yield HostPanel(id="host")
        yield RichLog(id="logs", max_lines=2000, wrap=False, markup=False, highlight=False)
        yield QuietFooter()

    def on_resize(self, event: events.Resize) -> None:
        self._fit_size(event.size.width, event.size.height)
        self.state.rows_dirty = True

    def _fit_size(self, width: int, height: int) -> None:
        """The table's columns and where the panels go, for a terminal of this size."""
        self.query_one(RunsTable).set_compact(width < COMPACT_BELOW)
        self.query_one("#middle").set_class(width < NARROW_BELOW, "-narrow")
        self.query_one("#middle").set_class(height < SHORT_BELOW, "-short")

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.query_one("#logs").display = False
        table = self.query_one(RunsTable)
        self._fit_size(self.size.width, self.size.height)
        self.restore_table()
        table.focus()
        self.query_one(LossChart).view = self.state.view
        self.run_worker(self.link.run(), name="engine-link", exclusive=True)
        self.set_interval(1 / REFRESH_HZ, self._refresh_views)
        if self.demo:
            self.set_interval(2.0, self._demo_fork)

    async def on_unmount(self) -> None:
        self.keep_view(flush=True)
        self.logs.stop()
        await self.link.stop()

    # -- feeding the views ----------------------------------------------------

    def _set_banner(self, message: str | None) -> None:
        self._banner = message
        with contextlib.suppress(NoMatches):  # also called while the app shuts down
            self._update_status()

    def _on_connected(self) -> None:
        self.feed.views.clear()  # the engine may have restarted: ask again
        self.shown = ()
        self._chart_now = True
        self.set_timer(HEAP_SETTLE_S, _settle_heap)

    def _update_status(self) -> None:
        status = self.query_one("#status", Static)
        banner = self._banner or self._store_problem
        if banner:
            line = f" ⚠ {banner}"
            if line != self._status_text:  # (the same line again costs bytes over SSH)
                self._status_text = line
                status.update(Text(line, style="bold black on yellow"))
            return
        counts: dict[str, int] = {}
        for run in self.state.runs.values():
            counts[run.state] = counts.get(run.state, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs yet: n"
        mode = "  [readonly]" if self.readonly else ""
        view = self.state.view
        smooth = (f"smooth {view.smoothing:g}" + ("  log y" if view.log_y else "")
                  + ("  all y" if view.all_y else ""))
        if view.group:
            groups = self.chart_groups
            alike = f"in {' '.join(view.group_by)}" if view.group_by else "but for seeds"
            smooth += (f"  {sum(len(g.runs) for g in groups)} runs as {len(groups)} means"
                       if groups else f"  no runs alike {alike}")
        text = f"  {summary}  ·  {view.metric_for(self.shown_keys())}  {smooth}{mode}"
        saved = f" ⚠ {self.memory.problem} " if self.memory.problem else ""
        if text + saved != self._status_text:  # redrawing the same line costs bytes over SSH
            self._status_text = text + saved
            status.update(Text.assemble((" traintop ", "bold reverse"), text, "  ",
                                        (saved, "black on yellow")))

    def _refresh_views(self) -> None:
        with contextlib.suppress(NoMatches):  # shutting down: the widgets are already gone
            self._redraw_dirty()

    def _redraw_dirty(self) -> None:
        state, table = self.state, self.query_one(RunsTable)
        now = time.monotonic()
        self.tell_stops()
        if state.rows_dirty:  # runs came, went or changed state: show that at once
            state.rows_dirty = False
            table.refresh_rows(state)
            table.refresh_values(state, state.take_restated())  # the rest waits its second
            self.restore_selection()  # once, at the first listing
            self._update_status()
            self._follow_selection()  # a new fork joins the selected run's chart
        if state.changed and now - self._values_at >= STREAM_EVERY_S:
            self._values_at = now
            if table.live_sort:
                table.refresh_rows(state)  # the order follows values that moved
            table.refresh_values(state, state.take_changed())
        if state.emas_stale:
            state.emas_stale = False
            self._reseed_emas()
        for run_id in state.take_points_arrived():
            self.feed.points_arrived(run_id)
        self._fetch_views()  # asks only for views that are missing or stale
        if self._chart_now or (state.chart_dirty and now - self._chart_at >= CHART_EVERY_S):
            self._chart_now = state.chart_dirty = False
            self._chart_at = now
            self._draw_chart()
        if state.telemetry_dirty:
            state.telemetry_dirty = False
            names = {run_id: run.name for run_id, run in state.runs.items()}
            history = list(state.telemetry)
            gpus = self.query_one(GpuPanel)
            gpus.update_samples(history, names)
            self.query_one("#side").set_class(not gpus.display, "-no-gpu")
            self.query_one(RunsTable).set_gpu_column(gpus.display)
            self.query_one(HostPanel).update_samples(history)
            if history and history[-1].store_problem != self._store_problem:
                self._store_problem = history[-1].store_problem
                self._update_status()
        if self.keep_view():
            self._update_status()  # the saved view's line came or went

    def _follow_selection(self) -> None:
        """Chart the marked runs, or the selected run's family; follow its logs."""
        with contextlib.suppress(NoMatches):  # a cursor message may land while shutting down
            self._chart_selection()

    def _chart_selection(self) -> None:
        run = self.selected
        group = self.query_one(RunsTable).selected_group  # a sweep's header: its runs
        family = (self.state.family(run.id) if run else
                  # a sweep forked from one run: that run's curve too, where they part
                  [*filter(None, [group.parent]), *group.runs] if group else [])
        shown = chart_runs(family, self.state.marks, run.id if run else None, self.state.pinned)
        if shown != self.shown:
            self.shown = shown
            self.feed.forget(o.run_id for o in shown)
            self._chart_now = True
        self._fetch_views()
        if self.query_one("#logs").display:
            self.logs.follow(run.id if run else None)

    def marks_changed(self, before: set[str]) -> None:
        """Show the marks now held (``before``: those held before) in the table and chart."""
        self.query_one(RunsTable).repaint_marks(before | set(self.state.marks))
        self._follow_selection()

    def pins_changed(self) -> None:
        """Show the pinned runs at the top of the table and on the chart."""
        self.query_one(RunsTable).refresh_rows(self.state)
        self._follow_selection()

    def show_view(self, view: ChartView, refetch: bool) -> None:
        """Make ``view`` the chart's (and the EMA column's smoothing)."""
        regroup = (view.group, view.group_by) != (self.state.view.group,
                                                  self.state.view.group_by)
        self.state.view = view
        self.query_one(LossChart).view = view
        if refetch:
            self._fetch_views()
        if regroup:
            self._draw_chart()
        self._update_status()

    def values_stale(self) -> None:
        """Draw the table's streamed values at the next tick, not a second later."""
        self._values_at = 0.0

    def _view_request(self) -> ViewRequest:
        """What the chart needs: its metric at twice its dot columns, axis and smoothing."""
        columns = max(1, self.query_one(LossChart).content_size.width - GUTTER) * 2
        buckets = min(MAX_VIEW_BUCKETS, 2 * columns)
        window = self.chart_window()
        return ViewRequest.of(self.state.view, buckets, self.shown_keys(), window)

    def _fetch_views(self) -> None:
        """Ask for the views the chart lacks (a live run's at most every two seconds).

        One fetch at a time: a slow engine gets no pile of requests, and the next
        refresh tick asks for whatever is still due.
        """
        if self._fetching:
            return
        request = self._view_request()
        due = self.feed.due([o.run_id for o in self.shown], request)
        if due:
            self._fetching = True
            self.run_worker(self._fetch_due(due, request), group="views")

    async def _fetch_due(self, due: list[str], request: ViewRequest) -> None:
        try:
            # All asked at once: the daemon answers them back to back, and the
            # chart is drawn once (a draw and its paint cost more than a view).
            fetched = await asyncio.gather(*(self.feed.fetch(run_id, request) for run_id in due))
            if any(fetched):
                # Drawn now, not at the next refresh tick: a selection shows at once.
                self._chart_now = False
                self._chart_at = time.monotonic()
                self._draw_chart()
        except NoMatches:  # the app is shutting down
            pass
        except (EngineError, EngineUnavailable, ProtocolError):
            pass
        finally:
            self._fetching = False

    def _draw_chart(self) -> None:
        chart = self.query_one(LossChart)
        forks_at: dict[float, list[str]] = {}  # the forks drawn at each step
        view = self.state.view
        by_time = view.axis != "step"
        live = False
        on_chart = {o.run_id for o in self.shown}
        table = self.query_one(RunsTable)
        curves: dict[str, Series] = {}
        for overlaid in self.shown:
            run = self.state.runs.get(overlaid.run_id)
            # A sweep's run by the values that set it apart, as in the table.
            name = "" if run is None else shown(table.shown_name(run.id), LEGEND_NAME)
            curve = None if run is None else self.feed.series(
                run.id, f"{run.id} {name}", overlaid.emphasis, overlaid.style,
                # the engine's watch said its loss diverged, and the loss is drawn
                outlier=bool(run.diverged) and view.metric_for(run.last) == run.loss_key,
            )
            if run is None or curve is None:
                continue
            live = live or not run.terminal
            curves[run.id] = curve
            # A fork's marker where its parent's curve is drawn too (always so in a family).
            if run.parent_id in on_chart and run.fork_step is not None and not by_time:
                forks_at.setdefault(float(run.fork_step), []).append(run.id)
        # One marker a step: forks made together (fork RUN lr=A,B,C) part at one point.
        markers = [(x, f"fork {ids[0]}" if len(ids) == 1 else f"{len(ids)} forks")
                   for x, ids in forks_at.items()]
        series = self._grouped(curves) if self.state.view.group else list(curves.values())
        chart.set_data(series, markers, self.state.view.axis, live=live,
                       window=self.chart_window(), cursor=self.cursor)
        self._update_status()  # it names the metric drawn, which the runs shown decide

    def _grouped(self, curves: dict[str, Series]) -> list[Series]:
        """The curves with each group of runs alike but for their seeds as one (its mean
        and band), where its first run stood; the selected run's group on top. Groups take
        the compare palette in order: three settings are told apart at a glance, which
        their runs' own colours (a hash of the first's id) do not promise."""
        groups = group_runs(curves, self.state.runs, self.state.view.group_by)
        self.bands.forget(groups)
        self.chart_groups = []
        points = self._view_request().buckets
        drawn = []
        for group in groups:
            members = [curves[r] for r in group.runs]
            if len(members) == 1:
                drawn.append(members[0])
                continue
            emphasis = any(m.emphasis for m in members)
            colour = COMPARE_PALETTE[len(self.chart_groups) % len(COMPARE_PALETTE)]
            self.chart_groups.append(group)
            drawn.append(self.bands.series(group, members, points, emphasis, colour))
        return sorted(drawn, key=lambda s: s.emphasis)  # stable: the rest keep their order

    def chart_changed(self) -> None:
        """Ask for the zoomed window's views, and draw the chart at once."""
        self._fetch_views()
        self._draw_chart()

    def _on_log_text(self, stream: str, text: str, reset: bool) -> None:
        with contextlib.suppress(NoMatches):  # text may still arrive while shutting down
            self._write_log(stream, text, reset)

    def _write_log(self, stream: str, text: str, reset: bool) -> None:
        log = self.query_one("#logs", RichLog)
        if reset:
            log.clear()
            run = self.state.runs.get(self.logs.run_id or "")
            if run is not None and run.kind == "attached":  # its pane would stay empty
                log.write(Text(ATTACHED_OUTPUT, style="bright_black"))
        for line in text.splitlines():
            # stderr: red, and marked for terminals (and copies) without colour
            log.write(Text.assemble(("▌", "red"), (line, "red")) if stream == "stderr"
                      else Text(line))

    @on(RunsTable.CursorMoved)
    def _selection_moved(self) -> None:
        # The table has repainted its cursor already. The chart (a view fetch and a full
        # layout) follows a single move at once; in a burst (j held) it follows once
        # the cursor rests, so the burst stays smooth.
        now = time.monotonic()
        burst, self._moved_at = now - self._moved_at < FOLLOW_AFTER_S, now
        if self._follow_timer is not None:
            self._follow_timer.stop()
            self._follow_timer = None
        if burst:
            self._follow_timer = self.set_timer(FOLLOW_AFTER_S, self._follow_selection)
        else:
            self._follow_selection()
