"""The traintop Textual app: runs table, loss chart, GPU and host panels, logs.

Widgets render ``TuiState``; they never talk to the daemon. Events from the
daemon only mark the state dirty, and a 4 Hz timer redraws what changed, so
a flood of metrics costs a few redraws a second and an idle screen none.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import DataTable, Footer, Input, RichLog, Static

from engine.client import EngineError, EngineUnavailable
from engine.demo import fork_request
from engine.paths import StatePaths, state_home
from engine.runs import WRAPPED_WORKLOAD
from tui.connection import EngineLink, LogFollower
from tui.keys import ACTIONS, BY_ID, bindings
from tui.screens.detail import RunDetail
from tui.screens.dialogs import ConfirmDialog, ForkDialog, NewRunDialog
from tui.screens.help import HelpScreen
from tui.state import TERMINAL, TuiState
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.host_panel import HostPanel
from tui.widgets.loss_chart import LossChart, Series
from tui.widgets.runs_table import SORTS, RunsTable

REFRESH_HZ = 4
COMPACT_BELOW = 110  # columns: narrower terminals get the compact runs table
SMOOTHING_STEPS = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)


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


class TraintopApp(App[None]):
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
        self.demo = demo
        self.paths = paths or StatePaths(state_home())
        self.readonly = readonly
        self.state = TuiState(smoothing=SMOOTHING_STEPS[3])
        self.link = EngineLink(
            self.paths, self.state, self._set_banner, self._on_connected, autostart=autostart
        )
        self.logs = LogFollower(self.paths, self._on_log_text)
        self.metric_key = "loss"
        self.x_by_time = False
        self.log_y = False
        self._banner: str | None = None
        self._status_text = ""
        self._history_requested: set[str] = set()
        self._shown_family: tuple[str, ...] = ()

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
        self.state.runs_dirty = True

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
        self._history_requested.clear()
        self.state.metrics.clear()
        self._shown_family = ()

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
        state = self.state
        if state.runs_dirty:
            state.runs_dirty = False
            self.query_one(RunsTable).refresh_from(state)
            self._update_status()
            self._follow_selection()
        if state.chart_dirty:
            state.chart_dirty = False
            self._draw_chart()
        if state.telemetry_dirty:
            state.telemetry_dirty = False
            names = {run_id: run["name"] for run_id, run in state.runs.items()}
            history = list(state.telemetry)
            self.query_one(GpuPanel).update_samples(history, names)
            self.query_one(HostPanel).update_samples(history)

    @property
    def selected(self) -> dict[str, Any] | None:
        run_id = self.query_one(RunsTable).selected_id
        return self.state.runs.get(run_id) if run_id else None

    def _follow_selection(self) -> None:
        """Load the history of the selected run's family; follow its logs."""
        run = self.selected
        family = tuple(self.state.family(run["id"])) if run else ()
        if family != self._shown_family:
            self._shown_family = family
            self.state.chart_dirty = True
        for run_id in family:
            if run_id not in self._history_requested:
                self._history_requested.add(run_id)
                self._load_history(run_id)
        if self.query_one("#logs").display:
            self.logs.follow(run["id"] if run else None)

    @work(group="history")
    async def _load_history(self, run_id: str) -> None:
        try:
            points = await self.link.all_metrics(run_id)
        except (EngineError, EngineUnavailable):
            self._history_requested.discard(run_id)
            return
        self.state.set_history(run_id, points)

    def _draw_chart(self) -> None:
        chart = self.query_one(LossChart)
        series, markers = [], []
        selected = self.selected
        for run_id in self._shown_family:
            run = self.state.runs.get(run_id)
            metrics = self.state.metrics.get(run_id)
            data = metrics.series.get(self.metric_key) if metrics else None
            if run is None or data is None:
                continue
            xs = data.times if self.x_by_time else data.steps
            label = f"{run['id']} {run['name']}"
            series.append(
                Series(
                    label,
                    list(xs),
                    list(data.values),
                    emphasis=selected is not None and run_id == selected["id"],
                )
            )
            if run.get("parent_id") and run.get("fork_step") is not None and not self.x_by_time:
                markers.append((float(run["fork_step"]), f"fork {run['id']}"))
        chart.set_data(series, markers, "time" if self.x_by_time else "step")

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

    @on(DataTable.RowSelected)
    def _row_chosen(self) -> None:
        self.action_details()  # the table takes Enter for itself

    @on(DataTable.RowHighlighted)
    def _selection_moved(self) -> None:
        self._follow_selection()
        self._update_status()

    @work(exclusive=True, group="demo")
    async def _demo_fork(self) -> None:
        """``traintop demo``: fork the middle run once it is a little way in."""
        request = fork_request(list(self.state.runs.values()))
        if request is not None and self.state.connected:
            await self._request("fork", f"demo: forked {request['run']} with lr=1e-3", **request)

    # -- actions --------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = BY_ID.get(action)
        if spec is not None and spec.mutates and self.readonly:
            return None  # shown greyed out, and the key does nothing
        return True

    def _need_run(self) -> dict[str, Any] | None:
        run = self.selected
        if run is None:
            self.notify("no run selected", severity="warning")
        return run

    async def _request(self, method: str, done: str, **params: Any) -> bool:
        """Send a request; say what happened either way."""
        try:
            await self.link.call(method, **params)
        except (EngineError, EngineUnavailable) as exc:
            self.notify(str(exc), severity="error", title=f"{method} refused")
            return False
        self.notify(done)
        return True

    @work
    async def action_pause(self) -> None:
        run = self._need_run()
        if run is None:
            return
        if run["state"] == "paused":
            await self._request("resume", f"resuming {run['id']}", run=run["id"])
        else:
            await self._request("pause", f"pausing {run['id']} at its next step", run=run["id"])

    @work
    async def action_release(self) -> None:
        run = self._need_run()
        if run is not None:
            await self._request(
                "pause",
                f"pausing {run['id']} and releasing its memory",
                run=run["id"],
                release=True,
            )

    async def _submit(self, method: str, params: dict[str, Any]) -> str | None:
        try:
            result = await self.link.call(method, **params, cwd=str(Path.cwd()))
        except (EngineError, EngineUnavailable) as exc:
            return str(exc)
        self.notify(
            f"{'forked' if method == 'fork' else 'started'} {result['id']} ({result['name']})"
        )
        self.query_one(RunsTable).pending_select = result["id"]
        return None

    def action_fork(self) -> None:
        run = self._need_run()
        if run is None:
            return
        if run["workload"] == WRAPPED_WORKLOAD:
            self.notify(
                f"{run['id']} wraps a command: traintop cannot checkpoint it, so it cannot be "
                "forked (use a train(run) function or traintop.init)",
                severity="error",
            )
            return
        if run["state"] not in ("running", "paused", "finished"):
            self.notify(f"cannot fork a run that is {run['state']}", severity="error")
            return
        self.push_screen(ForkDialog(run, lambda p: self._submit("fork", p)))

    @work
    async def action_new_run(self) -> None:
        try:
            workloads = await self.link.call("workloads")
        except (EngineError, EngineUnavailable) as exc:
            self.notify(str(exc), severity="error")
            return

        async def describe(spec: str) -> dict[str, Any] | str:
            try:
                found = await self.link.call("workloads", workload=spec, cwd=str(Path.cwd()))
            except (EngineError, EngineUnavailable) as exc:
                return str(exc)
            return dict(next(iter(found.values())))

        self.push_screen(NewRunDialog(workloads, describe, lambda p: self._submit("start", p)))

    @work
    async def action_kill(self) -> None:
        run = self._need_run()
        if run is None:
            return
        if run["state"] in TERMINAL:
            self.notify(f"{run['id']} is already {run['state']}", severity="warning")
            return
        body = (
            f"Kill run {run['id']} ({run['name']}), {run['state']} at step {run['step']}"
            f" on {run['device']}?\nSIGTERM to its process group, SIGKILL after 10 s. "
            "Its metrics and logs are kept."
        )
        if await self.push_screen_wait(ConfirmDialog("Kill run", body, "Kill")):
            await self._request("kill", f"killing {run['id']}", run=run["id"])

    @work
    async def action_details(self) -> None:
        run = self._need_run()
        if run is None:
            return
        try:
            detail = await self.link.call("get_run", run=run["id"])
        except (EngineError, EngineUnavailable) as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(RunDetail(detail))

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
        self.state.runs_dirty = True
        self._update_status()

    def action_log_scale(self) -> None:
        self.log_y = not self.log_y
        self.query_one(LossChart).log_y = self.log_y
        self._update_status()

    def action_x_axis(self) -> None:
        self.x_by_time = not self.x_by_time
        self.state.chart_dirty = True

    def action_next_metric(self) -> None:
        keys: set[str] = set()
        for run_id in self._shown_family:
            metrics = self.state.metrics.get(run_id)
            keys.update(metrics.series if metrics else ())
        ordered = sorted(keys) or ["loss"]
        index = ordered.index(self.metric_key) if self.metric_key in ordered else -1
        self.metric_key = ordered[(index + 1) % len(ordered)]
        self.state.chart_dirty = True
        self._update_status()

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(RunsTable).text_filter = event.value
        self.state.runs_dirty = True

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = bool(field.value)
        self.query_one(RunsTable).focus()
        self.query_one(LossChart).smoothing = self.state.smoothing

    def action_sort(self) -> None:
        table = self.query_one(RunsTable)
        table.order_by = SORTS[(SORTS.index(table.order_by) + 1) % len(SORTS)]
        self.state.runs_dirty = True
        self.notify(f"sorted by {table.order_by}")

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.readonly))

    def action_cursor_down(self) -> None:
        self.query_one(RunsTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(RunsTable).action_cursor_up()
