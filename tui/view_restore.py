"""Opening the TUI where it was left: the saved view applied at start, and kept as
it changes (see ``tui.view_memory`` for the file).

The chart's settings, the marks and the pins are applied before the first
listing (marks and pins of runs gone are dropped by it); the table's sort,
filter and folds when it mounts; the selection once the runs are listed. A
saved selection that no longer exists leaves the default one. ``traintop demo``
opens on the run the demo forks, whatever was saved: the user asked for the demo.
"""

from __future__ import annotations

from textual.widgets import Input

from engine.client.demo import fork_parent
from tui.view_actions import ViewActions
from tui.view_memory import SavedView, ViewMemory
from tui.widgets.runs_table import RunsTable


class ViewRestore(ViewActions):
    """Restores the saved view and saves it again as it changes."""

    memory: ViewMemory
    demo: bool
    _restored: bool  # the selection was restored: from now on the view is saved
    _table: RunsTable  # kept: the view is saved at exit, when the DOM is torn down already

    def restore_chart_and_marks(self) -> None:
        """The saved chart settings, marks and pins, into the state (before any listing)."""
        saved = self.memory.loaded
        self.state.view = saved.chart_view(self.state.view)
        self.state.set_marks(saved.marks)
        self.state.pinned = list(saved.pinned)
        self._restored = False

    def restore_table(self) -> None:
        """The saved columns, sort, folds and filter, into the table (when it mounts)."""
        saved = self.memory.loaded
        table = self._table = self.query_one(RunsTable)
        table.extra_columns = saved.columns
        if saved.sort_column in table.sort_columns:
            table.sort_column, table.descending = saved.sort_column, saved.descending
        table.folded = set(saved.folded)
        if saved.filter:
            field = self.query_one("#filter", Input)
            field.value = table.text_filter = saved.filter
            field.display = True

    def restore_selection(self) -> None:
        """Once the runs are listed: select the saved run (the demo's forked run in
        ``traintop demo``), if it still exists; the first row otherwise."""
        if self._restored or not self.state.listed:
            return
        self._restored = True
        table = self.query_one(RunsTable)
        demo_run = fork_parent(list(self.state.runs.values())) if self.demo else None
        wanted = demo_run.id if demo_run is not None else self.memory.loaded.selected
        if wanted is None or wanted not in table.items:
            return
        table.pending_select = wanted  # unfolds what hides it
        table.refresh_rows(self.state)
        table.pending_select = None  # filtered out: not picked later by surprise

    def saved_view(self) -> SavedView:
        """The view shown now, as it would be saved."""
        table = self._table
        view = self.state.view
        return SavedView(
            selected=table.selected_id, metric=view.metric, smoothing=view.smoothing,
            log_y=view.log_y, all_y=view.all_y, axis=view.axis, group=view.group,
            group_by=view.group_by, filter=table.text_filter,
            sort_column=table.sort_column, descending=table.descending,
            folded=tuple(sorted(table.folded)), marks=tuple(self.state.marks),
            pinned=tuple(self.state.pinned), columns=table.extra_columns,
        )

    def keep_view(self, flush: bool = False) -> bool:
        """Save the view if it changed (``flush``: now, not a second later); True if
        the line the status shows about the file changed."""
        if not self._restored:
            return False  # not yet what the user saw: the saved one still stands
        problem = self.memory.problem
        self.memory.keep(self.saved_view())
        if flush:
            self.memory.flush()
        return self.memory.problem != problem
