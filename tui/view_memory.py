"""What the TUI showed, kept across its restarts: the selected run, the chart's
settings, the table's filter, sort and folds, the marked and the pinned runs.

Kept per state directory in the TUI's own file (``engine.client.view_file``).
``SavedView`` is the plain record; ``ViewMemory`` reads it once at start and
writes it again when the view changes (at most once a second, and at exit).
A file that cannot be used is reported in one line and the defaults are used;
a field of the wrong type is left at its default, the others still count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.client.view_file import ViewFileError, read_view, write_view
from tui.chart_view import ChartView
from tui.time_axis import X_AXES

VERSION = 1
SAVE_EVERY_S = 1.0  # a held key moves the selection many times a second: one write


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _ids(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(dict.fromkeys(value))


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _axis(value: Any) -> str | None:
    return value if value in X_AXES else None


def _weight(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# Each field's check: the value as the record holds it, or None if it is not one.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "selected": _text, "metric": _text, "smoothing": _weight, "log_y": _flag, "all_y": _flag,
    "axis": _axis, "group": _flag, "group_by": _ids, "filter": _text, "sort_column": _text,
    "descending": _flag,
    "folded": _ids, "marks": _ids, "pinned": _ids, "columns": _ids,
}


@dataclass(frozen=True)
class SavedView:
    """The view as saved; None where the app's own default applies."""

    selected: str | None = None
    metric: str | None = None
    smoothing: float | None = None
    log_y: bool = False
    all_y: bool = False
    axis: str = "step"
    group: bool = False
    group_by: tuple[str, ...] = ()
    filter: str = ""
    sort_column: str = "created"
    descending: bool = False
    folded: tuple[str, ...] = ()
    marks: tuple[str, ...] = ()
    pinned: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # values shown as columns of their own (``a``)
    problems: tuple[str, ...] = field(default=(), compare=False)  # fields left at default

    def chart_view(self, base: ChartView) -> ChartView:
        """``base`` with the saved chart settings (fields the chart adds keep their own)."""
        return replace(
            base,
            metric=self.metric or base.metric,
            smoothing=base.smoothing if self.smoothing is None else self.smoothing,
            log_y=self.log_y,
            all_y=self.all_y,
            axis=self.axis,
            group=self.group,
            group_by=self.group_by,
        )

    def to_wire(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        data = asdict(self)
        del data["problems"]
        return {"version": VERSION, **{k: list(v) if isinstance(v, tuple) else v
                                       for k, v in data.items()}}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> SavedView:
        """The record of a saved JSON object; a field of the wrong type is named in
        ``problems`` and left at its default."""
        values: dict[str, Any] = {}
        problems = []
        if "axis" not in data and data.get("x_by_time") is True:  # as saved before 'elapsed'
            data = {**data, "axis": "time"}
        for key, check in _CHECKS.items():
            if key not in data or data[key] is None:
                continue
            value = check(data[key])
            if value is None:
                problems.append(key)
            else:
                values[key] = value
        return cls(**values, problems=tuple(problems))


class ViewMemory:
    """The saved view of one state directory: read at start, written as it changes."""

    def __init__(self, home: Path | None) -> None:
        self.home = home
        self.problem: str | None = None  # one line for the status: why the file was ignored
        try:
            data = read_view(home)
        except ViewFileError as exc:
            data, self.problem = None, f"saved view ignored: {exc}"
        self.loaded = SavedView() if data is None else SavedView.from_wire(data)
        if self.loaded.problems:
            self.problem = f"saved view: ignored {', '.join(self.loaded.problems)}"
        self._written: SavedView | None = None  # None: nothing shown yet
        self._pending: SavedView | None = None
        self._saved_at = 0.0

    def keep(self, view: SavedView) -> None:
        """Note the view shown now; it is written if it changed and a second has passed.

        The first view noted is the one restored: it is not written. A file that was
        ignored is left as it is until the user changes the view, and a saved run that
        is gone stays saved until then (it may come back with its engine).
        """
        if self._written is None:
            self._written = view
            return
        if view == self._written:
            self._pending = None
            return
        self._pending = view
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Write the view noted last, if it is not written yet (at exit, say)."""
        view, self._pending = self._pending, None
        if view is None:
            return
        self._saved_at = time.monotonic()
        try:
            write_view(self.home, view.to_wire())
        except OSError as exc:  # a full disk or a read-only home: the TUI goes on
            self.problem = f"cannot save the view: {exc.strerror or exc}"
            return
        self._written = view
        self.problem = None
