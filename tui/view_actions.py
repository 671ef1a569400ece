"""The app's actions that change what is shown: the chart's view, the table's order,
folds and filter, the cursor, the log pane and help. None of them changes a run.

Kept apart from ``tui.app``, which lays out and feeds the views; the actions that
change runs are in ``tui.run_actions``.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from textual import on, work
from textual.widgets import Input, RichLog

from engine.client.client import EngineError, EngineUnavailable
from engine.client.events import ProtocolError
from engine.client.run_select import filter_errors, unknown_names, unknown_value
from engine.common.settings import unknown_keys
from tui.chart_view import ChartView
from tui.compare import MAX_MARKS, MAX_PINS, Overlaid
from tui.connection import LogFollower
from tui.run_folds import toggle_fold, toggle_fold_all
from tui.screens.dialogs import ColumnsDialog, GroupDialog
from tui.screens.help import HelpScreen
from tui.sweep_actions import SweepActions
from tui.widgets.runs_table import RunsTable


class ViewActions(SweepActions):
    """Keys that change the view; ``show_view`` (the app's) applies a new ChartView."""

    logs: LogFollower
    shown: tuple[Overlaid, ...]

    def show_view(self, view: ChartView, refetch: bool) -> None:
        """Make ``view`` the chart's; ``refetch`` when the daemon's views depend on the change."""
        raise NotImplementedError

    def values_stale(self) -> None:
        """The table's streamed values must be drawn again at the next tick."""
        raise NotImplementedError

    def marks_changed(self, before: set[str]) -> None:
        """Show the marks now held in the table and on the chart (``before``: the old ones)."""
        raise NotImplementedError

    def shown_keys(self) -> set[str]:
        """Every metric the runs on the chart have logged."""
        keys: set[str] = set()
        for overlaid in self.shown:
            run = self.state.runs.get(overlaid.run_id)
            keys.update(run.last if run is not None else ())
        return keys

    def action_mark(self) -> None:
        group = self.query_one(RunsTable).selected_group
        if group is not None:  # a sweep's header: all its runs
            self._mark_all([r for r in group.runs if r in self.state.runs])
            return
        run = self.selected
        if run is None:
            return
        marks = self.state.marks
        if run.id not in marks and len(marks) >= MAX_MARKS:
            self._too_many_marks()
            return
        before = set(marks)
        self.state.toggle_mark(run.id)
        self.marks_changed(before)

    def action_mark_shown(self) -> None:
        table = self.query_one(RunsTable)
        shown = [r for r in table.order if r in self.state.runs]  # not the sweeps' headers
        if not shown:
            return
        if len(shown) > MAX_MARKS and not all(r in self.state.marks for r in shown):
            self.notify(f"{len(shown)} runs shown; at most {MAX_MARKS} are compared at once: "
                        "filter them (/) or fold some (c) first", severity="warning")
            return
        self._mark_all(shown)

    def _mark_all(self, members: list[str]) -> None:
        """Mark every run of ``members``, or unmark them if all are marked."""
        marks = self.state.marks
        before = set(marks)
        if all(r in marks for r in members):
            self.state.set_marks(r for r in marks if r not in members)
        else:
            wanted = [*marks, *(r for r in members if r not in marks)]
            if len(wanted) > MAX_MARKS:
                self._too_many_marks()
                return
            self.state.set_marks(wanted)
        self.marks_changed(before)

    def _too_many_marks(self) -> None:
        self.notify(f"at most {MAX_MARKS} runs are compared at once: "
                    "unmark one (space) or all (u) first", severity="warning")

    def pins_changed(self) -> None:
        """Show the pinned runs at the top of the table and on the chart."""
        raise NotImplementedError

    def action_pin(self) -> None:
        run = self.selected
        if run is None:
            self.notify("select a run to pin it", severity="warning")
            return
        if run.id not in self.state.pinned and len(self.state.pinned) >= MAX_PINS:
            self.notify(f"at most {MAX_PINS} runs are pinned at once: unpin one (t) first",
                        severity="warning")
            return
        pinned = self.state.toggle_pin(run.id)
        self.pins_changed()
        self.notify(f"{'pinned' if pinned else 'unpinned'} {run.id}")

    def action_clear_marks(self) -> None:
        before = set(self.state.marks)
        self.state.set_marks(())
        self.marks_changed(before)

    def action_logs(self) -> None:
        logs = self.query_one("#logs", RichLog)
        logs.display = not logs.display
        run = self.selected
        self.logs.follow(run.id if run and logs.display else None)

    def action_smoothing(self) -> None:
        self.show_view(self.state.view.next_smoothing(), refetch=True)  # the daemon smooths too
        self._reseed_emas()

    @work(group="emas", exclusive=True)
    async def _reseed_emas(self) -> None:
        with contextlib.suppress(EngineError, EngineUnavailable, ProtocolError):
            await self.link.reseed_emas()
        self.values_stale()

    def action_log_scale(self) -> None:
        view = self.state.view
        self.show_view(replace(view, log_y=not view.log_y), refetch=False)

    def action_all_y(self) -> None:
        view = self.state.view
        self.show_view(replace(view, all_y=not view.all_y), refetch=False)

    def action_x_axis(self) -> None:
        self.show_view(self.state.view.next_axis(), refetch=True)

    def action_group_curves(self) -> None:
        view = self.state.view
        if view.group:
            self.show_view(replace(view, group=False), refetch=False)
        else:
            self.push_screen(GroupDialog(view.group_by, self._set_group))

    async def _set_group(self, params: dict[str, Any]) -> str | None:
        """Group the chart's runs by the keys the dialog names (none: all but seeds); the
        first key no run has, said, if any."""
        keys: tuple[str, ...] = params["group-by"]
        problem = unknown_keys((r.config for r in self.state.runs.values()), keys)
        if problem is None:
            self.show_view(replace(self.state.view, group=True, group_by=keys), refetch=False)
        return problem

    def action_next_metric(self) -> None:
        self.show_view(self.state.view.next_metric(self.shown_keys()), refetch=True)

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        table = self.query_one(RunsTable)
        table.text_filter = event.value
        table.refresh_rows(self.state)
        # A condition half typed ('lr<'), wrong ('lr<x') or on a name no run has ('lrr<1')
        # is left out or keeps nothing; the field says so.
        runs = self.state.runs.values()
        wrong = filter_errors(event.value) or unknown_names(event.value, runs)
        event.input.set_class(bool(wrong), "-invalid")

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = bool(field.value)
        self.query_one(RunsTable).focus()
        for error in filter_errors(field.value):
            self.notify(f"filter: {error}; left out", severity="warning")
        for problem in unknown_names(field.value, self.state.runs.values()):
            self.notify(f"filter: {problem}", severity="warning")

    def action_columns(self) -> None:
        table = self.query_one(RunsTable)
        self.push_screen(ColumnsDialog(table.extra_columns, self._set_columns))

    async def _set_columns(self, params: dict[str, Any]) -> str | None:
        """Show the columns the dialog names; the first one no run has, said, if any."""
        names: tuple[str, ...] = params["columns"]
        runs = list(self.state.runs.values())
        for name in names:
            problem = unknown_value(runs, name) if runs else None
            if problem is not None:
                return problem
        self.query_one(RunsTable).set_extra_columns(names, self.state)  # saved at the tick
        return None

    def action_sort(self) -> None:
        table = self.query_one(RunsTable)
        columns = table.sort_columns
        column = columns[(columns.index(table.sort_column) + 1) % len(columns)]
        self._sort(column, descending=False)

    def action_sort_reverse(self) -> None:
        table = self.query_one(RunsTable)
        self._sort(table.sort_column, descending=not table.descending)

    def _sort(self, column: str, descending: bool) -> None:
        self.query_one(RunsTable).sort_by(column, descending, self.state)
        order = "creation order" if column == "created" else column
        self.notify(f"sorted by {order}, {'descending' if descending else 'ascending'}")

    def action_fold(self) -> None:
        """Fold or unfold the selected run's forks; on a leaf, fold its parent."""
        table = self.query_one(RunsTable)
        row = table.row_of(table.selected_id or "")
        if row is None:
            return
        changed, select = toggle_fold(row.id, bool(row.children), table.items, table.folded)
        if changed:
            table.refresh_rows(self.state, select=select)

    def action_fold_all(self) -> None:
        """Fold every run that has forks, or unfold all if every one is folded."""
        table = self.query_one(RunsTable)
        table.folded, selected = toggle_fold_all(table.items, table.folded, table.selected_id)
        table.refresh_rows(self.state, select=selected)

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
