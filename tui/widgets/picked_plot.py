"""What the sweep view's two plots share: data drawn with one run picked apart, laid
out once per (size, data, pick) and kept as strips, so that a repaint costs nothing, and
new data refreshes only the cells it changes."""

from __future__ import annotations

from typing import Generic, TypeVar

from textual.strip import Strip
from textual.widget import Widget

from tui.widgets.line_diff import changed_regions

T = TypeVar("T")


class PickedPlot(Widget, Generic[T]):
    """A plot of one ``T``; subclasses lay it out (``_layout``)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._data: T | None = None
        self._picked: str | None = None  # the run drawn apart (j/k in the sweep view)
        self._strips: list[Strip] = []
        self._key: tuple[object, ...] | None = None

    def set_data(self, data: T, picked: str | None = None) -> None:
        """Draw ``data``, run ``picked`` set apart: only the cells that change, once drawn
        at this size (a pick, a point that moved: a few lines over SSH, not the plot)."""
        if (data, picked) == (self._data, self._picked):
            return
        self._data, self._picked = data, picked
        width, height = self.content_size
        if self._key is None or self._key[:2] != (width, height):
            self.refresh()
            return
        strips = self._layout(width, height)
        regions = changed_regions(self._strips, strips)
        self._strips, self._key = strips, (width, height, data, picked)
        if regions:
            self.refresh(*regions)

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size
        key = (width, height, self._data, self._picked)
        if key != self._key:
            self._strips, self._key = self._layout(width, height), key
        if 0 <= y < len(self._strips):
            return self._strips[y]
        return Strip.blank(width, self.rich_style)

    def _layout(self, width: int, height: int) -> list[Strip]:
        raise NotImplementedError
