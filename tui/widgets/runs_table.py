"""The runs table: one row per run, forks under their parent, foldable, sortable.

A Line API widget rather than a DataTable: a DataTable repaints every row
when one cell changes, and rebuilds all rows to reorder them. Here each
repaint names the cells that changed, so a live run costs a few dozen bytes
a second over SSH, a cursor move repaints two lines, and 500 rows cost only
the ones on screen (cells are built when a row is first drawn).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.client.run_select import parse_filter
from tui.run_folds import unfold_ancestors
from tui.run_tree import TreeRow, build_rows
from tui.state import TuiState
from tui.sweep_groups import Item, SweepGroup, group_id, sweep_groups, tree_parent
from tui.table_items import item_matches, item_sort_key, row_names
from tui.widgets.run_cells import (
    COLUMNS,
    COMPACT_COLUMNS,
    LIVE_SORTS,
    SORT_COLUMNS,
    column_widths,
    group_cells,
    name_text,
    queue_places,
    value_cells,
)
from tui.widgets.table_lines import PAD, column_at, header_titles, line_strip

SCROLLBAR = 2  # kept free on the right, so the columns do not move when it shows


class RunsTable(ScrollView, can_focus=True, inherit_bindings=False):
    """Renders ``TuiState.runs``; the selected run is the row under the cursor."""

    DEFAULT_CSS = """
    RunsTable { height: auto; overflow-x: hidden; }
    RunsTable > .runs-table--header { text-style: bold; }
    RunsTable > .runs-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"runs-table--header", "runs-table--cursor"}

    class CursorMoved(Message):
        """The selected run changed (by key, click, or its row going away)."""

        def __init__(self, run_id: str | None) -> None:
            super().__init__()
            self.run_id = run_id

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sort_column = "created"
        self.descending = False
        self.text_filter = ""
        self.folded: set[str] = set()
        self.compact = False
        self.gpu_column = True  # until telemetry says the machine has no GPU
        self.extra_columns: tuple[str, ...] = ()  # values the user added as columns (``a``)
        self.pending_select: str | None = None  # a run just started here: select it on arrival
        self.cursor = 0
        self._state = TuiState()
        self._rows: list[TreeRow] = []
        self._index: dict[str, int] = {}
        self._widths: dict[str, int] = {}
        self._cells: dict[str, dict[str, Text]] = {}  # by run id, for rows drawn so far
        self._lines: dict[str, Strip] = {}  # rows drawn without the cursor, by run id
        self._lines_width = 0
        self._grown: dict[str, int] = {}  # columns widened by a value too long for them
        self._announced: str | None = None  # the selection last told to the app
        self._groups: dict[str, SweepGroup] = {}  # the sweeps' header rows, by row id
        self._names: dict[str, str] = {}  # each row's name as shown (a sweep's run: its label)
        self._drawn_names: dict[str, str] = {}
        self._drawn_pins: list[str] = []  # the pinned runs as drawn (a pin is in the name)
        self._labels: dict[tuple[str, ...], dict[str, str]] = {}  # by a sweep's runs
        self._places: dict[str, int] = {}  # each queued run's place in its queue

    # -- what is shown --------------------------------------------------------

    @property
    def columns_shown(self) -> tuple[str, ...]:
        own: tuple[str, ...] = COMPACT_COLUMNS if self.compact else COLUMNS
        if not self.gpu_column:
            own = tuple(c for c in own if c != "GPU")
        return own + self.extra_columns

    @property
    def sort_columns(self) -> tuple[str, ...]:
        """What ``o`` steps through: creation order, every column, then the user's own."""
        return SORT_COLUMNS + self.extra_columns

    @property
    def order(self) -> list[str]:
        """The ids of the rows shown, top to bottom."""
        return [row.id for row in self._rows]

    @property
    def selected_id(self) -> str | None:
        """The row under the cursor: a run's id, or a sweep header's (``sweep:NAME``)."""
        return self._rows[self.cursor].id if 0 <= self.cursor < len(self._rows) else None

    @property
    def selected_group(self) -> SweepGroup | None:
        """The sweep whose header is under the cursor, if one is."""
        return self._groups.get(self.selected_id or "")

    @property
    def items(self) -> dict[str, Item]:
        """What the rows are made of: the runs, and a header per sweep."""
        return {**self._state.runs, **self._groups}

    def shown_name(self, run_id: str) -> str:
        """The name a run goes by in the table: under a sweep, its differing values."""
        run = self._state.runs.get(run_id)
        group = self.group_of(run_id)
        if run is not None and group is not None and run_id not in self._names:
            return row_names([TreeRow(run_id, 1, 0, 0)], self._groups, self._state.runs,
                             self._labels)[run_id]  # folded away: named as it would be
        return self._names.get(run_id) or (run.name if run is not None else run_id)

    def group_of(self, run_id: str) -> SweepGroup | None:
        """The sweep group ``run_id`` belongs to (the run itself, or its header)."""
        if run_id in self._groups:
            return self._groups[run_id]
        run = self._state.runs.get(run_id)
        return self._groups.get(group_id(run) or "") if run is not None else None

    @property
    def live_sort(self) -> bool:
        """Whether the order follows values that change while runs train."""
        return self.sort_column in LIVE_SORTS or self.sort_column in self.extra_columns

    def row_of(self, run_id: str) -> TreeRow | None:
        index = self._index.get(run_id)
        return None if index is None else self._rows[index]

    def cell_text(self, run_id: str, column: str) -> str:
        """The plain text of one cell as drawn (for tests and the palette)."""
        row = self.row_of(run_id)
        cells = None if row is None else self._row_cells(row)
        if cells is None:
            raise KeyError(run_id)
        return cells[column].plain

    def on_resize(self, event: events.Resize) -> None:
        """Fit the columns to the new width."""
        if self._rows:
            self.refresh_rows(self._state)

    def set_compact(self, compact: bool) -> None:
        """Show fewer, narrower columns (for terminals under ~110 columns)."""
        if compact != self.compact:
            self.compact = compact
            self._redraw_all()

    def set_gpu_column(self, shown: bool) -> None:
        """Show the GPU memory column or not (a machine with no GPU: all dashes)."""
        if shown != self.gpu_column:
            self.gpu_column = shown
            if self._rows:  # laid out again now: the rows never go blank for a tick
                self.refresh_rows(self._state)

    def set_extra_columns(self, names: tuple[str, ...], state: TuiState) -> None:
        """Show these values as columns after the table's own (``a``); a sort by one that
        goes returns to creation order."""
        self.extra_columns = names
        if self.sort_column not in self.sort_columns:
            self.sort_column, self.descending = "created", False
        self._redraw_all()
        self.refresh_rows(state)

    def _redraw_all(self) -> None:
        self._cells.clear()
        self._lines.clear()
        self._widths, self._grown = {}, {}
        self.refresh()

    # -- feeding --------------------------------------------------------------

    def refresh_rows(self, state: TuiState, select: str | None = None) -> None:
        """Rebuild the rows (runs came or went, changed state, or the view changed).

        The cursor stays on the run it was on, or moves to ``select``.
        """
        self._state = state
        target = select or self.selected_id
        wanted = parse_filter(self.text_filter, errors=[])  # (a bad condition: left out)
        self._groups = sweep_groups(state.runs)
        items = self.items
        rows = build_rows(
            items,
            tree_parent(items),
            self.folded,
            matches=(lambda item: item_matches(item, wanted)) if wanted else None,
            sort_key=item_sort_key(self.sort_column, state, self.descending),
            descending=self.descending,
            first=state.pinned,
        )
        pending = self.pending_select
        if pending is not None and pending in state.runs and unfold_ancestors(
            pending, items, self.folded
        ):
            return self.refresh_rows(state, target)
        self._names = row_names(rows, self._groups, state.runs, self._labels)
        self._places = queue_places(state.runs.values())
        room = self.size.width - SCROLLBAR - 2 * PAD * len(self.columns_shown)
        widths = column_widths(self.columns_shown, state.runs.values(), rows, self.compact,
                               self._names, state.pinned, self._places,
                               room if self.size.width else None, self._grown)
        # Names carry sweep labels and depth: rows alike with other names must be redrawn.
        changed = (rows != self._rows or widths != self._widths
                   or self._names != self._drawn_names or state.pinned != self._drawn_pins)
        if changed:
            self._rows, self._widths, self._drawn_names = rows, widths, self._names
            self._drawn_pins = list(state.pinned)
            self._index = {row.id: i for i, row in enumerate(rows)}
            self._cells.clear()  # names carry depth and fold counts: build the shown ones anew
            self._lines.clear()
            self._set_virtual_size()
            self.refresh()
        if self.pending_select in self._index:
            target, self.pending_select = self.pending_select, None
        cursor = self._index.get(target, self.cursor) if target is not None else self.cursor
        cursor = max(0, min(cursor, len(self._rows) - 1))
        if changed:
            self.cursor = cursor
            self._scroll_to_cursor()
            self._note_selection()
        else:
            self.move_cursor(cursor)

    def refresh_values(self, state: TuiState, run_ids: set[str]) -> None:
        """Repaint only the cells whose text changed, of runs in ``run_ids`` (and of the
        headers of their sweeps)."""
        self._state = state
        headers = {g for r in run_ids if (run := state.runs.get(r)) is not None
                   and (g := group_id(run)) in self._groups}
        for run_id in run_ids | headers:
            old = self._cells.get(run_id)
            if old is None or run_id not in self._index:
                continue  # never drawn: its cells are built when it scrolls into view
            if run_id not in state.runs and run_id not in self._groups:
                continue
            cells = self._build_cells(self._rows[self._index[run_id]])
            if cells == old:
                continue
            self._cells[run_id] = cells
            self._lines.pop(run_id, None)
            wider = {c: cells[c].cell_len for c in self.columns_shown
                     if cells[c].cell_len > self._widths[c]}
            if wider:  # rare (a loss printed as 1.234e-05): widen for good, draw it all again
                self._grown.update(wider)
                self._widths.update(wider)
                self._lines.clear()
                self._set_virtual_size()
                self.refresh()
            else:
                self._repaint_cells(run_id, old, cells)

    def _repaint_cells(self, run_id: str, old: dict[str, Text], new: dict[str, Text]) -> None:
        y = self._index[run_id] - round(self.scroll_offset.y) + 1
        if not 1 <= y < self.size.height:
            return  # off screen: nothing to send
        x = 0
        for column in self.columns_shown:
            width = self._widths[column] + 2 * PAD
            if old[column] != new[column]:
                self.refresh(Region(x, y, width, 1))
            x += width

    def repaint_marks(self, run_ids: set[str]) -> None:
        """Repaint the mark cell of ``run_ids`` (marked, unmarked or recoloured)."""
        top = round(self.scroll_offset.y)
        for run_id in run_ids:
            index = self._index.get(run_id)
            if index is None:
                continue  # filtered or folded away: drawn as it is when it shows again
            self._lines.pop(run_id, None)
            self.refresh(Region(0, index - top + 1, PAD, 1))

    def _set_virtual_size(self) -> None:
        width = sum(self._widths[c] + 2 * PAD for c in self.columns_shown)
        size = Size(width, len(self._rows) + 1)
        if size != self.virtual_size:
            self.virtual_size = size

    # -- sorting (folds are the app's: it changes ``folded``, then refreshes the rows) --

    def sort_by(self, column: str, descending: bool, state: TuiState) -> None:
        if column not in self.sort_columns:
            raise ValueError(column)
        self.sort_column, self.descending = column, descending
        self._lines.pop("", None)  # the header's arrow moved
        self.refresh_rows(state)
        self.refresh(Region(0, 0, self.size.width, 1))  # the header's arrow

    # -- the cursor -----------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        """Put the cursor on ``row`` (clamped); repaint just the two lines involved."""
        if not self._rows:
            return
        row = max(0, min(row, len(self._rows) - 1))
        if row == self.cursor:
            return
        old, self.cursor = self.cursor, row
        scrolled = self._scroll_to_cursor()
        if not scrolled:
            top = round(self.scroll_offset.y)
            for index in (old, row):
                self.refresh(Region(0, index - top + 1, self.size.width, 1))
        self._note_selection()

    def select(self, run_id: str) -> None:
        if run_id in self._index:
            self.move_cursor(self._index[run_id])

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor + 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor - 1)

    def page(self, pages: int) -> None:
        self.move_cursor(self.cursor + pages * max(1, self.size.height - 2))

    def _scroll_to_cursor(self) -> bool:
        """Scroll so the cursor's row shows; True if the view moved."""
        visible = max(1, self.size.height - 1)
        top = round(self.scroll_offset.y)
        if self.cursor < top:
            top = self.cursor
        elif self.cursor >= top + visible:
            top = self.cursor - visible + 1
        else:
            return False
        self.scroll_to(y=top, animate=False, immediate=True)
        return True

    def _note_selection(self) -> None:
        selected = self.selected_id
        if selected != self._announced:
            self._announced = selected
            self.post_message(self.CursorMoved(selected))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = column_at(offset.x, self.columns_shown, self._widths)
            if column is not None:
                descending = column == self.sort_column and not self.descending
                self.sort_by(column, descending, self._state)
            return
        self.move_cursor(round(self.scroll_offset.y) + offset.y - 1)

    # -- drawing --------------------------------------------------------------

    def _build_cells(self, row: TreeRow) -> dict[str, Text]:
        width = self._widths.get("NAME", 8)
        group = self._groups.get(row.id)
        if group is not None:
            cells = group_cells(group, self._state, self.compact, self.extra_columns)
            cells["NAME"] = name_text(self._names[row.id], row, width, style="bold")
            return cells
        run = self._state.runs[row.id]
        cells = value_cells(run, self._state, self.compact, self._places.get(run.id),
                            self.extra_columns)
        cells["NAME"] = name_text(self._names.get(row.id, run.name), row, width,
                                  pinned=run.id in self._state.pinned, tags=run.tags)
        return cells

    def _row_cells(self, row: TreeRow) -> dict[str, Text] | None:
        """The row's cells; None for a run removed since the rows were last laid out
        (its row goes at the next refresh, which may come after a repaint)."""
        cells = self._cells.get(row.id)
        if cells is None:
            if row.id not in self._groups and row.id not in self._state.runs:
                return None
            cells = self._cells[row.id] = self._build_cells(row)
        return cells

    def render_line(self, y: int) -> Strip:
        # Scrolling redraws every row on screen, so the common case (a row drawn
        # before, not under the cursor) must cost a dict lookup: looking up the
        # widget's style alone walks the DOM.
        width = self.size.width
        if width != self._lines_width:
            self._lines.clear()
            self._lines_width = width
        index = round(self.scroll_offset.y) + y - 1
        key = "" if y == 0 else self._rows[index].id if 0 <= index < len(self._rows) else None
        if key is not None and index != self.cursor and key in self._lines:
            return self._lines[key]
        base = self.rich_style
        if not self._widths or key is None:
            return Strip.blank(width, base)
        if y == 0:
            line = self._header(width, base)
        else:
            row = self._rows[index]
            cells = self._row_cells(row)
            if cells is None:
                return Strip.blank(width, base)
            style = base
            if index == self.cursor:
                style = base + self.get_component_rich_style("runs-table--cursor")
            mark = self._state.marks.get(row.id)
            line = self._strip([cells[c] for c in self.columns_shown], width, style, mark)
            if index == self.cursor:
                return line
        self._lines[key] = line
        return line

    def _header(self, width: int, base: Style) -> Strip:
        titles = header_titles(self.columns_shown, self.sort_column, self.descending)
        style = base + self.get_component_rich_style("runs-table--header")
        return self._strip(titles, width, style)

    def _strip(self, cells: list[Text], width: int, style: Style, mark: str | None = None) -> Strip:
        console = self.app.console
        return line_strip(cells, self.columns_shown, self._widths, width, style, console, mark)
