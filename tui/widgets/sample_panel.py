"""The shared frame of the telemetry panels: keep the history, lay the lines out
again on each update or resize (never per frame), and repaint only the cells
that changed since the last frame (a new sample moves a figure or two)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.strip import Strip
from textual.widget import Widget

from engine.common.telemetry import Sample
from tui.widgets.bars import join_lines
from tui.widgets.line_diff import changed_regions


class SamplePanel(Widget):
    """A panel drawn from telemetry samples; subclasses write ``build_lines``."""

    DEFAULT_CSS = """
    SamplePanel {
        height: 1fr;
        overflow: hidden;
    }
    """

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._history: Sequence[Sample] = ()
        self._strips: list[Strip] = []
        self._laid_out_for = (0, 0)  # what the strips were laid out for

    @property
    def content(self) -> Text:
        """The panel's text as last laid out (plain lines, for tests and screenshots)."""
        return Text("\n".join(strip.text.rstrip() for strip in self._strips))

    def on_resize(self, event: events.Resize) -> None:
        """Lay out again for the new size."""
        self._rebuild()

    def render_line(self, y: int) -> Strip:
        """One line of the last layout."""
        if self._laid_out_for != tuple(self.content_size):
            self._strips = self._layout()
        if 0 <= y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.content_size.width, self.rich_style)

    def _layout(self) -> list[Strip]:
        width, height = self.content_size
        self._laid_out_for = (width, height)
        if width <= 0 or height <= 0:
            return []
        text = join_lines(self.build_lines(width, height), width)
        base = self.rich_style
        lines = self.app.console.render_lines(
            text, self.app.console.options.update(width=width, height=height), pad=True
        )
        blank = Strip.blank(width, base)
        strips = [Strip(Segment.apply_style(line, base), width).simplify() for line in lines]
        return (strips + [blank] * height)[:height]

    def _rebuild(self) -> None:
        width, height = self.content_size
        if width <= 0 or height <= 0:
            return  # not laid out yet: the first Resize builds it
        if self._laid_out_for != (width, height):
            self._strips = self._layout()
            self.refresh()
            return
        strips = self._layout()
        regions = changed_regions(self._strips, strips)
        self._strips = strips
        if regions:
            self.refresh(*regions)

    def build_lines(self, width: int, height: int) -> list[Text]:
        """The panel's lines for a ``width`` x ``height`` area."""
        raise NotImplementedError
