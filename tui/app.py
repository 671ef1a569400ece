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
from typing import ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import Footer, Input, RichLog, Static

from engine.client.client import EngineError, EngineUnavailable
from engine.common.format import SHOWN_NAME, shown
from engine.common.protocol import MAX_BUCKETS as MAX_VIEW_BUCKETS
from engine.common.runs import RunState
from engine.rundir.paths import StatePaths, state_home
from tui import partial_updates
from tui.chart_feed import ChartFeed, ViewRequest
from tui.connection import EngineLink, LogFollower
from tui.keys import ACTIONS, bindings
from tui.run_actions import RunActions
from tui.screens.help import HelpScreen
from tui.state import TuiState
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.host_panel import HostPanel
from tui.widgets.loss_chart import GUTTER, LossChart
from tui.widgets.run_cells import SORT_COLUMNS
from tui.widgets.runs_table import RunsTable

REFRESH_HZ = 4
STREAM_EVERY_S = 1.0  # table cells that move with training repaint at most this often
# A live curve at most this often: a loss curve read over minutes loses nothing, and
# each redraw of a young run's curve costs a few hundred bytes over SSH.
CHART_EVERY_S = 2.0
FOLLOW_AFTER_S = 0.05  # the chart follows the cursor once it has rested this long
COMPACT_BELOW = 110  # columns: narrower terminals get the compact runs table
SMOOTHING_STEPS = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)


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


class ActionCommands(Provider):
    """The command palette, fed from the same registry as keys and help."""

    async def search(self, query: str) -> Hits:
        app = self.app
        assert isinstance(app, TraintopApp)
        matcher = self.matcher(query)
        for action in ACTIONS:
            score = matcher.match(f"{action.label} {action.description}")
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(action.description),
                    lambda a=action.id: app.run_action(a),
                    help=action.label,
                )


class TraintopApp(RunActions):
    CSS_PATH = "app.tcss"
    TITLE = "traintop"
    BINDINGS: ClassVar[list[BindingType]] = bindings()  # type: ignore[assignment]
    COMMANDS = App.COMMANDS | {ActionCommands}

    def __init__(
        self,
        paths: StatePaths | None = None,
        readonly: bool = False,
        autostart: bool = True,
        demo: bool = False,
    ) -> None:
        super().__init__()
        partial_updates.install()
        self.demo = demo
        self.paths = paths or StatePaths(state_home())
        self.readonly = readonly
        self.state = TuiState(smoothing=SMOOTHING_STEPS[3])
        self.link = EngineLink(
            self.paths, self.state, self._set_banner, self._on_connected, autostart=autostart,
            on_runs=self._refresh_views,
        )
        self.logs = LogFollower(self.paths, self._on_log_text)
        self.metric_key = "loss"
        self.x_by_time = False
        self.log_y = False
        self._banner: str | None = None
        self._status_text = ""
        self.feed = ChartFeed(self.link.call)
        self._fetching = False
        self._shown_family: tuple[str, ...] = ()
        self._chart_now = False  # the view changed (selection, metric, axis): draw at once
        self._values_at = self._chart_at = 0.0  # when streamed values were last drawn
        self._follow_timer: Timer | None = None
        self._moved_at = 0.0  # when the cursor last moved

    # -- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("traintop — connecting to the engine…", id="status")
        yield Input(placeholder="filter runs: id, name, state, workload", id="filter")
        yield RunsTable(id="runs")
        with Horizontal(id="middle"):
            yield LossChart(id="chart")
            with Vertical(id="side"):
                yield GpuPanel(id="gpus")
                yield HostPanel(id="host")
        yield RichLog(id="logs", max_lines=2000, wrap=False, markup=False, highlight=False)
        yield Footer()

    def on_resize(self, event: events.Resize) -> None:
        self.query_one(RunsTable).set_compact(event.size.width < COMPACT_BELOW)
        self.state.rows_dirty = True

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.query_one("#logs").display = False
        table = self.query_one(RunsTable)
        table.set_compact(self.size.width < COMPACT_BELOW)
        table.focus()
        self.query_one(LossChart).smoothing = self.state.smoothing
        self.run_worker(self.link.run(), name="engine-link", exclusive=True)
        self.set_interval(1 / REFRESH_HZ, self._refresh_views)
        if self.demo:
            self.set_interval(2.0, self._demo_fork)

    async def on_unmount(self) -> None:
        self.logs.stop()
        await self.link.stop()

    # -- feeding the views ----------------------------------------------------

    def _set_banner(self, message: str | None) -> None:
        self._banner = message
        with contextlib.suppress(NoMatches):  # also called while the app shuts down
            self._update_status()

    def _on_connected(self) -> None:
        self.feed.views.clear()  # the engine may have restarted: ask again
        self._shown_family = ()
        self._chart_now = True
        self.set_timer(HEAP_SETTLE_S, _settle_heap)

    def _update_status(self) -> None:
        status = self.query_one("#status", Static)
        if self._banner:
            self._status_text = ""
            status.update(Text(f" ⚠ {self._banner}", style="bold black on yellow"))
            return
        counts: dict[str, int] = {}
        for run in self.state.runs.values():
            counts[run["state"]] = counts.get(run["state"], 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs yet: n"
        mode = "  [readonly]" if self.readonly else ""
        smooth = f"smooth {self.state.smoothing:g}" + ("  log y" if self.log_y else "")
        text = f"  {summary}  ·  {self.metric_key}  {smooth}{mode}"
        if text != self._status_text:  # redrawing the same line costs bytes over SSH
            self._status_text = text
            status.update(Text.assemble((" traintop ", "bold reverse"), text))

    def _refresh_views(self) -> None:
        with contextlib.suppress(NoMatches):  # shutting down: the widgets are already gone
            self._redraw_dirty()

    def _redraw_dirty(self) -> None:
        state, table = self.state, self.query_one(RunsTable)
        now = time.monotonic()
        if state.rows_dirty:  # runs came, went or changed state: show that at once
            state.rows_dirty = False
            table.refresh_rows(state)
            table.refresh_values(state, state.take_restated())  # the rest waits its second
            self._update_status()
            self._follow_selection()  # a new fork joins the selected run's chart
        if state.changed and now - self._values_at >= STREAM_EVERY_S:
            self._values_at = now
            if table.live_sort:
                table.refresh_rows(state)  # the order follows values that moved
            table.refresh_values(state, state.take_changed())
        for run_id in state.take_points_arrived():
            self.feed.points_arrived(run_id)
        self._fetch_views()  # asks only for views that are missing or stale
        if self._chart_now or (state.chart_dirty and now - self._chart_at >= CHART_EVERY_S):
            self._chart_now = state.chart_dirty = False
            self._chart_at = now
            self._draw_chart()
        if state.telemetry_dirty:
            state.telemetry_dirty = False
            names = {run_id: run["name"] for run_id, run in state.runs.items()}
            history = list(state.telemetry)
            self.query_one(GpuPanel).update_samples(history, names)
            self.query_one(HostPanel).update_samples(history)

    def _follow_selection(self) -> None:
        """Chart the selected run's family; follow its logs."""
        with contextlib.suppress(NoMatches):  # a cursor message may land while shutting down
            self._chart_selection()

    def _chart_selection(self) -> None:
        run = self.selected
        family = tuple(self.state.family(run["id"])) if run else ()
        if family != self._shown_family:
            self._shown_family = family
            self.feed.forget(family)
            self._chart_now = True
        self._fetch_views()
        if self.query_one("#logs").display:
            self.logs.follow(run["id"] if run else None)

    def _view_request(self) -> ViewRequest:
        """What the chart needs: its metric at twice its dot columns, axis and smoothing."""
        columns = max(1, self.query_one(LossChart).content_size.width - GUTTER) * 2
        return ViewRequest(
            self.metric_key,
            min(MAX_VIEW_BUCKETS, 2 * columns),
            "time" if self.x_by_time else "step",
            self.state.smoothing,
        )

    def _fetch_views(self) -> None:
        """Ask for the views the chart lacks (a live run's at most every two seconds).

        One fetch at a time: a slow engine gets no pile of requests, and the next
        refresh tick asks for whatever is still due.
        """
        if self._fetching:
            return
        request = self._view_request()
        due = self.feed.due(self._shown_family, request)
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
        except (EngineError, EngineUnavailable):
            pass
        finally:
            self._fetching = False

    def _draw_chart(self) -> None:
        chart = self.query_one(LossChart)
        series, markers = [], []
        selected = self.selected
        live = False
        for run_id in self._shown_family:
            run = self.state.runs.get(run_id)
            emphasis = selected is not None and run_id == selected["id"]
            curve = None if run is None else self.feed.series(
                run_id, f"{run['id']} {shown(run['name'], SHOWN_NAME)}", emphasis
            )
            if run is None or curve is None:
                continue
            live = live or not RunState(run["state"]).terminal
            series.append(curve)
            if run.get("parent_id") and run.get("fork_step") is not None and not self.x_by_time:
                markers.append((float(run["fork_step"]), f"fork {run['id']}"))
        chart.set_data(series, markers, "time" if self.x_by_time else "step", live=live)

    def _on_log_text(self, stream: str, text: str, reset: bool) -> None:
        with contextlib.suppress(NoMatches):  # text may still arrive while shutting down
            self._write_log(stream, text, reset)

    def _write_log(self, stream: str, text: str, reset: bool) -> None:
        log = self.query_one("#logs", RichLog)
        if reset:
            log.clear()
        style = "red" if stream == "stderr" else ""
        for line in text.splitlines():
            log.write(Text(line, style=style))

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

    # -- view actions (run actions are in RunActions) ---------------------------

    def action_logs(self) -> None:
        logs = self.query_one("#logs", RichLog)
        logs.display = not logs.display
        run = self.selected
        self.logs.follow(run["id"] if run and logs.display else None)

    def action_smoothing(self) -> None:
        index = (
            SMOOTHING_STEPS.index(self.state.smoothing)
            if (self.state.smoothing in SMOOTHING_STEPS)
            else 0
        )
        self.state.smoothing = SMOOTHING_STEPS[(index + 1) % len(SMOOTHING_STEPS)]
        self.query_one(LossChart).smoothing = self.state.smoothing
        self._reseed_emas()
        self._fetch_views()  # the daemon smooths the chart's curves too
        self._update_status()

    @work(group="emas", exclusive=True)
    async def _reseed_emas(self) -> None:
        with contextlib.suppress(EngineError, EngineUnavailable):
            await self.link.reseed_emas()
        self._values_at = 0.0

    def action_log_scale(self) -> None:
        self.log_y = not self.log_y
        self.query_one(LossChart).log_y = self.log_y
        self._update_status()

    def action_x_axis(self) -> None:
        self.x_by_time = not self.x_by_time
        self._fetch_views()

    def action_next_metric(self) -> None:
        keys: set[str] = set()
        for run_id in self._shown_family:
            keys.update(self.state.runs.get(run_id, {}).get("last") or ())
        ordered = sorted(keys) or ["loss"]
        index = ordered.index(self.metric_key) if self.metric_key in ordered else -1
        self.metric_key = ordered[(index + 1) % len(ordered)]
        self._fetch_views()
        self._update_status()

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        table = self.query_one(RunsTable)
        table.text_filter = event.value
        table.refresh_rows(self.state)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = bool(field.value)
        self.query_one(RunsTable).focus()
        self.query_one(LossChart).smoothing = self.state.smoothing

    def action_sort(self) -> None:
        table = self.query_one(RunsTable)
        column = SORT_COLUMNS[(SORT_COLUMNS.index(table.sort_column) + 1) % len(SORT_COLUMNS)]
        self._sort(column, descending=False)

    def action_sort_reverse(self) -> None:
        table = self.query_one(RunsTable)
        self._sort(table.sort_column, descending=not table.descending)

    def _sort(self, column: str, descending: bool) -> None:
        self.query_one(RunsTable).sort_by(column, descending, self.state)
        order = "creation order" if column == "created" else column
        self.notify(f"sorted by {order}, {'descending' if descending else 'ascending'}")

    def action_fold(self) -> None:
        self.query_one(RunsTable).toggle_fold(self.state)

    def action_fold_all(self) -> None:
        self.query_one(RunsTable).toggle_fold_all(self.state)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.readonly))

    def action_cursor_down(self) -> None:
        self.query_one(RunsTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(RunsTable).action_cursor_up()

    def action_page_down(self) -> None:
        self.query_one(RunsTable).page(1)

    def action_page_up(self) -> None:
        self.query_one(RunsTable).page(-1)

    def action_cursor_first(self) -> None:
        self.query_one(RunsTable).move_cursor(0)

    def action_cursor_last(self) -> None:
        table = self.query_one(RunsTable)
        table.move_cursor(len(table.order) - 1)
