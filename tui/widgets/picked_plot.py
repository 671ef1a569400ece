"""What the sweep view's two plots share: data drawn with one run picked apart, laid
out once per (size, data, pick) and kept as strips, so that a repaint costs nothing."""

from __future__ import annotations

from typing import Generic, TypeVar

from textual.strip import Strip
from textual.widget import Widget

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
        """Draw ``data``, run ``picked`` set apart (the same again draws nothing)."""
        if (data, picked) != (self._data, self._picked):
            self._data, self._picked = data, picked
            self.refresh()

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
